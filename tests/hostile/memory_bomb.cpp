// Allocates and touches 16 MB blocks forever.
#include <cstring>
#include <vector>
int main() {
    std::vector<char*> hoard;
    for (;;) {
        char* p = new char[16 << 20];
        std::memset(p, 1, 16 << 20);
        hoard.push_back(p);
    }
}
