package fanout

// A room's epoch names the incarnation its offsets belong to. It changes
// only when the room's history is gone: the external log started again
// (Restart, every room at once) or messages from another instance were
// lost (Renew, one room).

// Restart says that the external log started a new epoch (its history
// is gone): on every loop, each room drops its history and offsets and
// takes epoch, with history complete after covered; resumes waiting for
// the old epoch are answered (epoch_changed). Call it from the goroutine
// that calls PublishAt, before the first message of the new epoch: every
// loop runs the restart before that message.
func (e *Engine) Restart(epoch, covered uint64) {
	for _, l := range e.loopList() {
		t := newTask(taskRestart, nil, nil)
		t.epoch, t.covered = epoch, covered
		handoff(l, t)
	}
}

// Renew gives the room named name, if it exists, a new epoch: its
// history and offsets start again, so that loopcast.v1 clients see that
// something was lost (messages from another instance that never came).
// Messages published afterwards from the same goroutine come after it.
// Without an external log only.
func (e *Engine) Renew(name string) {
	e.mu.Lock()
	r := e.rooms[name]
	e.mu.Unlock()
	if r != nil {
		handoff(r.owner, newTask(taskRenew, r, nil))
	}
}

// restart runs Engine.Restart on this loop: every room it owns (listed
// or not yet) takes the log's new epoch with an empty history complete
// after covered; resumes waiting for the old epoch are answered now.
func (l *Loop) restart(epoch, covered uint64) {
	l.extEpoch, l.pos = epoch, covered
	var mine []*Room
	l.engine.mu.Lock()
	for _, r := range l.engine.rooms {
		if r.owner == l {
			mine = append(mine, r)
		}
	}
	l.engine.mu.Unlock()
	for _, r := range mine {
		l.dropHistory(r)
		r.hist.covered = covered
		r.top.Store(0)
		r.epoch.Store(epoch)
	}
	waiting := l.waiting
	l.waiting = nil
	for _, w := range waiting {
		l.placeJoin(w.r, w.s, w.req) // of the old epoch: epoch_changed
	}
}

// renew runs Engine.Renew on r's owner: a new epoch, offsets from 1.
func (l *Loop) renew(r *Room) {
	if r.gone.Load() {
		return // forgotten meanwhile: its next incarnation has a new epoch anyway
	}
	l.dropHistory(r)
	r.hist.covered = 0
	r.top.Store(0)
	r.forwarded = 0
	r.epoch.Store(newEpoch())
}

// Skipped says that the external log's messages up to to were removed
// before this engine saw them: on every loop, each room's history is
// complete only after to (a resume from before it is told
// history_passed). Call it from the goroutine that calls PublishAt.
func (e *Engine) Skipped(to uint64) {
	for _, l := range e.loopList() {
		t := newTask(taskSkipped, nil, nil)
		t.covered = to
		handoff(l, t)
	}
}

// skipped runs Engine.Skipped on this loop.
func (l *Loop) skipped(to uint64) {
	l.pos = max(l.pos, to)
	l.engine.mu.Lock()
	defer l.engine.mu.Unlock()
	for _, r := range l.engine.rooms {
		if r.owner == l {
			r.hist.covered = max(r.hist.covered, to)
		}
	}
}
