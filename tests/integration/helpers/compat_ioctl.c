/*
 * compat_ioctl REQUEST: ioctl(0, REQUEST, NULL) through the 32-bit system
 * call entry (int $0x80), which a seccomp filter sees with the i386 arch and
 * the i386 system call numbers.  Prints the errno it got (0: it succeeded).
 * REQUEST is TIOCSTI or TIOCLINUX.  x86_64 only (test_containment.sh).
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#define I386_NR_IOCTL 54

int main(int argc, char **argv)
{
    long request, ret;

    if (argc != 2 || (strcmp(argv[1], "TIOCSTI") != 0 && strcmp(argv[1], "TIOCLINUX") != 0)) {
        fprintf(stderr, "usage: compat_ioctl TIOCSTI|TIOCLINUX\n");
        return 2;
    }
    request = strcmp(argv[1], "TIOCSTI") == 0 ? TIOCSTI : TIOCLINUX;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"((long)I386_NR_IOCTL), "b"(0L), "c"(request), "d"(0L)
                     : "memory");
    printf("%ld\n", ret < 0 ? -ret : 0);
    return 0;
}
