/* A stand-in agent binary for the lab: it idles like a session and, when MIYABI_TITLE is set,
 * renames itself the way Claude Code >= 2.1 does (claude-code#24398, #61856): prctl(PR_SET_NAME)
 * for /proc/PID/comm and its argv area overwritten for /proc/PID/cmdline, exactly what libuv's
 * uv_set_process_title and Bun do on Linux. With MIYABI_CHILD set it starts that program as its
 * child first (codex's node wrapper keeps its native binary as one). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *title = getenv("MIYABI_TITLE");
    const char *child = getenv("MIYABI_CHILD");
    if (child && *child) {
        pid_t pid = fork();
        if (pid == 0) {
            unsetenv("MIYABI_CHILD");
            unsetenv("MIYABI_TITLE");
            execl(child, child, (char *)0);
            _exit(127);
        }
    }
    if (title && *title) {
        char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]);
        size_t room = (size_t)(end - start);
        memset(start, 0, room);
        strncpy(start, title, room);
        prctl(PR_SET_NAME, title, 0, 0, 0);
    }
    for (;;) pause();
    return 0;
}
