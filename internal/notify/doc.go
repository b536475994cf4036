// Package notify owns --notify: telling the app that a credential set has
// a new version, after each commit.
//
//	signal:SIGHUP:PROCESS_NAME   send the signal to every process whose
//	                             /proc/PID/comm is PROCESS_NAME (the pod
//	                             needs shareProcessNamespace: true; comm is
//	                             cut to 15 bytes by the kernel, so is the name)
//	http:URL                     POST {"name","version"} to URL (http or https)
//
// Signals: HUP, INT, QUIT, USR1, USR2, TERM, WINCH, with or without the SIG
// prefix. A signal is sent once per wake-up, however many sets rotated; a
// hook gets one POST per rotated set. Neither ever carries a value.
//
// A set's first version is not announced: it is committed before the app
// starts (the app's containers wait for the agent's readiness) and read at
// start. Every later version is. A failed delivery (no such process, a
// refused connection, a non-2xx answer) is retried with exponential backoff
// (1s doubling to 30s, 6 attempts), then logged as given up; newer commits
// are announced as usual.
package notify
