package fanout

import "context"

// Task is work an Executor runs on its loop; the method set of
// gnet.Runnable, so a gnet.EventLoop runs it as it is.
type Task interface {
	Run(context.Context) error
}

// Executor runs tasks on one event loop: gnet.EventLoop.Execute. Execute
// is safe from any goroutine and runs t later on the loop, after the
// events of the current poll cycle; an error means the loop is stopping
// and t will not run.
type Executor interface {
	Execute(ctx context.Context, t Task) error
}

// taskFunc adapts a function to Task.
type taskFunc func()

func (f taskFunc) Run(context.Context) error { f(); return nil }
