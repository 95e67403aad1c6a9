// Exponential instantiation: each level instantiates two distinct lower levels.
template <int N, int M> struct B {
    static constexpr long v = B<N - 1, 2 * M>::v + B<N - 1, 2 * M + 1>::v;
};
template <int M> struct B<0, M> { static constexpr long v = M; };
int main() { return B<40, 0>::v & 1; }
