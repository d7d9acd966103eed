package server

import (
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"
)

// The main listener must never lose its listener to a file-descriptor
// flood. gnet stops the whole engine when accept(2) fails with EMFILE,
// so the server keeps accept from ever reaching the open-file limit:
//
//   - every event loop has its own listener (SO_REUSEPORT) and accepts on
//     its own goroutine, so a connection's OnOpen runs in the same loop
//     turn as its accept: there are never accepted connections waiting
//     for a loop to notice them;
//   - OnOpen admits a connection only while the open connections stay
//     within the connection budget, RLIMIT_NOFILE minus fdReserve; one
//     beyond it gets a canned 503 and is closed at once, counted as
//     over_capacity. Connections therefore hold at most budget + one per
//     loop descriptors, and the reserve covers everything else the
//     process opens (NATS, the admin listener and its capped
//     connections, JWKS fetches, DNS lookups, the loops' own epoll and
//     event descriptors);
//   - if the engine stops anyway (ENFILE, ENOMEM), Server.Done is closed
//     and the command exits non-zero, so Kubernetes restarts the pod
//     instead of leaving a process that answers nothing.

// File descriptors kept out of the connection budget.
const (
	// fdReserveBase is what the process needs besides connections and
	// the loops' own descriptors: NATS (one connection, two while it
	// reconnects), the admin listener and its adminMaxConns connections,
	// JWKS and DNS lookups, standard streams, the Go runtime's poller.
	fdReserveBase = 192
	// fdPerLoop is what each event loop holds itself: its listener, its
	// epoll instance and its wake-up eventfd.
	fdPerLoop = 3
	// httpHeadroom is how many connections of the budget the default
	// max-conns leaves to plain HTTP (health probes, /livez, handshakes
	// in progress), so a server full of WebSockets still answers its
	// probes.
	httpHeadroom = 64
	// minConnBudget is the least budget the server starts with; a lower
	// open-file limit is refused at New.
	minConnBudget = 64
)

// connBudget is how many connections the main listener may hold at once
// given the process's open-file limit (RLIMIT_NOFILE, soft; the Go
// runtime raises it to the hard limit at start), and the limit itself.
func connBudget(loops int) (budget, nofile int, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, fmt.Errorf("reading the open-file limit: %w", err)
	}
	nofile = int(min(rl.Cur, 1<<31-1))
	budget = nofile - fdReserveBase - fdPerLoop*loops
	if budget < minConnBudget {
		return 0, nofile, fmt.Errorf("the open-file limit (RLIMIT_NOFILE %d) leaves no room for connections: it needs at least %d "+
			"(%d reserved for NATS, the admin port and the event loops); raise it (ulimit -n, LimitNOFILE)",
			nofile, minConnBudget+fdReserveBase+fdPerLoop*loops, fdReserveBase+fdPerLoop*loops)
	}
	return budget, nofile, nil
}

// effectiveMaxConns is the WebSocket cap the server enforces: Config.MaxConns
// when set and within the budget, the budget minus httpHeadroom
// otherwise. A MaxConns the open-file limit cannot hold is lowered, with
// a warning, rather than refused: the same manifest runs on machines with
// different limits.
func effectiveMaxConns(configured, budget int, log *slog.Logger, nofile int) int {
	most := max(budget-httpHeadroom, budget/2)
	switch {
	case configured == 0:
		return most
	case configured > most:
		log.Warn("max-conns is more than the open-file limit allows; using the most it allows (raise the limit: ulimit -n, LimitNOFILE)",
			"max_conns", configured, "using", most, "rlimit_nofile", nofile)
		return most
	}
	return configured
}
