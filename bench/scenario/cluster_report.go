package scenario

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/loopcast/loopcast/bench/result"
)

// phaseTally is what the end's checks count per phase.
type phaseTally struct {
	acked, unknown, refused, dropped, overdue int
	msgsUnknown, unknownAcked, unknownOnce    int
	slowest                                   time.Duration // longest wait for an answer
}

// counters are the clients' counts of a phase, or of the whole run.
type counters struct {
	deliveries, gaps, missing, reordered, duplicates, misplaced, unpublished int64
	epochChanges, recovered, notRecovered, resumeErrors, reconnects          int64
}

func (ph *phase) counters() counters {
	return counters{deliveries: ph.deliveries.Load(), gaps: ph.gaps.Load(), missing: ph.missing.Load(),
		reordered: ph.reordered.Load(), duplicates: ph.duplicates.Load(), misplaced: ph.misplaced.Load(),
		unpublished: ph.unpublished.Load(), epochChanges: ph.epochChanges.Load(), recovered: ph.resumesRecovered.Load(),
		notRecovered: ph.resumesNotRecovered.Load(), resumeErrors: ph.resumeErrors.Load(), reconnects: ph.reconnects.Load()}
}

func (c *counters) add(o counters) {
	c.deliveries += o.deliveries
	c.gaps += o.gaps
	c.missing += o.missing
	c.reordered += o.reordered
	c.duplicates += o.duplicates
	c.misplaced += o.misplaced
	c.unpublished += o.unpublished
	c.epochChanges += o.epochChanges
	c.recovered += o.recovered
	c.notRecovered += o.notRecovered
	c.resumeErrors += o.resumeErrors
	c.reconnects += o.reconnects
}

// fill writes the counters as metrics.
func (c counters) fill(m map[string]float64) {
	m[result.Deliveries] = float64(c.deliveries)
	m[result.Gaps] = float64(c.gaps)
	m[result.Missing] = float64(c.missing)
	m[result.Reordered] = float64(c.reordered)
	m[result.Duplicates] = float64(c.duplicates)
	m[Misplaced] = float64(c.misplaced)
	m[EpochChanges] = float64(c.epochChanges)
	m[ResumesRecovered] = float64(c.recovered)
	m[ResumesNotRecovered] = float64(c.notRecovered)
	m[ResumeRefused] = float64(c.resumeErrors)
	m[Reconnects] = float64(c.reconnects)
}

// fill writes the publish tally as metrics.
func (t phaseTally) fill(m map[string]float64) {
	m[AttemptsAcked] = float64(t.acked)
	m[AttemptsUnknown] = float64(t.unknown)
	m[AttemptsRefused] = float64(t.refused)
	m[AttemptsDropped] = float64(t.dropped)
	m[AttemptsOverdue] = float64(t.overdue)
	m[SlowestAnswer] = round3(t.slowest.Seconds())
	m[MessagesUnknown] = float64(t.msgsUnknown)
	m[UnknownAcked] = float64(t.unknownAcked)
	m[UnknownOnce] = float64(t.unknownOnce)
}

// report checks what every client received against what every publisher
// was told, and fills in the result: the whole run's figures in Metrics,
// each phase's in Faults, what failed in Errors.
func (s *clusterRun) report() {
	end := s.endChecks()
	tallies, totals := s.tallyPublishes()
	var run counters
	var ackGapMax time.Duration
	for i, ph := range s.phases {
		f, worst := s.phaseResult(i, ph, tallies[i], end)
		s.r.Faults = append(s.r.Faults, f)
		if i > 0 {
			ackGapMax = max(ackGapMax, worst)
		}
		run.add(ph.counters())
	}
	// Found only at the end: messages never delivered (head or tail of a
	// client's stream), streams that began too early, acknowledgements
	// at another offset than delivered.
	run.missing = int64(end.missing + end.netMissing)
	run.misplaced += int64(totals.misplacedAcks)
	run.unpublished += int64(end.early)
	s.runMetrics(run, totals, end, ackGapMax)
	s.verdict(run, totals)
}

// phaseResult is phase i's figures; worst is its longest time a
// publisher went without an acknowledgement.
func (s *clusterRun) phaseResult(i int, ph *phase, t phaseTally, end endTally) (f result.Fault, worst time.Duration) {
	m := map[string]float64{}
	t.fill(m)
	ph.counters().fill(m)
	last := i == len(s.phases)-1
	if !last { // the tail publishes nothing new
		for _, p := range s.pubs {
			g := ackGap(p.acks, ph.start, ph.end)
			m[AckGapPrefix+p.label] = round3(g.Seconds())
			worst = max(worst, g)
		}
		m[AckGapMax] = round3(worst.Seconds())
		if again, ok := s.ackedAgainAfter(ph.start); ok && i > 0 {
			m["acked_again_s"] = round3(again.Seconds())
		}
	}
	s.phasesMu.Lock()
	for k, v := range ph.figures {
		m[k] = v
	}
	notes := append([]string(nil), ph.notes...)
	s.phasesMu.Unlock()
	if last {
		m["missing_at_end"] = float64(end.missing)
		notes = append(notes, s.tailNotes()...)
	}
	return result.Fault{Name: ph.name, StartS: round3(ph.start.Sub(s.start).Seconds()),
		WindowS: round3(ph.end.Sub(ph.start).Seconds()), Metrics: m, Notes: notes}, worst
}

// runMetrics fills in the whole run's figures.
func (s *clusterRun) runMetrics(run counters, totals publishTotals, end endTally, ackGapMax time.Duration) {
	r := s.r
	publishing := s.pubEnd.Sub(s.start)
	r.ElapsedS = round3(publishing.Seconds())
	r.Params.DurationS = r.ElapsedS
	totals.fill(r.Metrics)
	run.fill(r.Metrics)
	r.Metrics[result.DeliveriesPerSec] = perSec(uint64(run.deliveries), publishing)
	r.Metrics[PublishedMessages] = float64(totals.msgs)
	r.Metrics[result.PublishedPerSec] = perSec(uint64(totals.msgs), publishing)
	r.Metrics[MessagesRefusedFirst] = float64(totals.newMsgID)
	r.Metrics[RefusedDelivered] = float64(totals.refusedDelivered)
	r.Metrics[Unresolved] = float64(totals.unresolved)
	r.Metrics[DeliveredUnpublished] = float64(run.unpublished)
	r.Metrics["epochs_seen"] = float64(len(s.epochs))
	r.Metrics[AckGapMax] = round3(ackGapMax.Seconds())
	r.Metrics[ProtocolFaults] = float64(s.oddCount.Load())
	r.Metrics["publish_ticks_deferred"] = float64(totals.deferred)
	r.Metrics["client_rooms"] = float64(end.clientRooms)
	r.Latency[result.LatencyHandshake] = result.FromHist(&s.hs)
}

// verdict records what failed.
func (s *clusterRun) verdict(run counters, totals publishTotals) {
	r := s.r
	if run.gaps > 0 || run.missing > 0 || run.duplicates > 0 || run.reordered > 0 || run.misplaced > 0 || run.unpublished > 0 {
		r.Errorf("delivery faults: %d gaps, %d messages missing, %d duplicates, %d reordered, %d misplaced, %d delivered that no subscription should have had",
			run.gaps, run.missing, run.duplicates, run.reordered, run.misplaced, run.unpublished)
	}
	if run.epochChanges > 0 || len(s.epochs) > 1 {
		r.Errorf("epoch changes: %d seen by clients; epochs seen: %v", run.epochChanges, s.epochs)
	}
	if totals.overdue > 0 {
		r.Errorf("%d pub attempts not answered within %s", totals.overdue, s.cfg.AnswerBound)
	}
	if totals.unresolved > 0 {
		r.Errorf("%d messages never acknowledged (retried for %s)", totals.unresolved, s.cfg.RetryFor)
	}
	if totals.refusedDelivered > 0 {
		r.Errorf("%d refused publishes were delivered after all (a false refusal)", totals.refusedDelivered)
	}
	if run.notRecovered > 0 {
		r.Errorf("%d resumes not recovered", run.notRecovered)
	}
	if n := s.oddCount.Load(); n > 0 || totals.doubles > 0 {
		r.Errorf("%d frames the clients could not make sense of, %d messages acknowledged at two places: %s",
			n, totals.doubles, strings.Join(s.oddities, "; "))
	}
}

// ackGap is the longest time within [from, to) without an
// acknowledgement among acks (in arrival order), from to the first and
// from the last to to included.
func ackGap(acks []ackRec, from, to time.Time) time.Duration {
	prev, gap := from, time.Duration(0)
	for _, a := range acks {
		if a.at.Before(from) {
			continue
		}
		if !a.at.Before(to) {
			break
		}
		gap = max(gap, a.at.Sub(prev))
		prev = a.at
	}
	return max(gap, to.Sub(prev))
}

// ackedAgainAfter is how long after t the last publisher to do so got an
// acknowledgement for an attempt sent at or after t.
func (s *clusterRun) ackedAgainAfter(t time.Time) (time.Duration, bool) {
	var worst time.Duration
	for _, p := range s.pubs {
		found := false
		for _, a := range p.acks {
			if !a.sent.Before(t) {
				worst = max(worst, a.at.Sub(t))
				found = true
				break
			}
		}
		if !found {
			return 0, false
		}
	}
	return worst, true
}

// publishTotals are the whole run's publish figures.
type publishTotals struct {
	phaseTally
	msgs, newMsgID, refusedDelivered, unresolved, misplacedAcks, deferred, doubles int
}

// tallyPublishes counts every attempt by the phase it was sent in, and
// every message answered unknown by the phase of that answer, with its
// fate.
func (s *clusterRun) tallyPublishes() ([]phaseTally, publishTotals) {
	tallies := make([]phaseTally, len(s.phases))
	var tot publishTotals
	for _, p := range s.pubs {
		tot.deferred += p.deferred
		tot.doubles += p.doubles
	}
	for _, room := range s.rooms {
		for _, st := range room.streams {
			for _, m := range st.msgs {
				tot.tallyMessage(m, tallies)
			}
		}
	}
	for _, t := range tallies {
		tot.acked += t.acked
		tot.unknown += t.unknown
		tot.refused += t.refused
		tot.dropped += t.dropped
		tot.overdue += t.overdue
		tot.msgsUnknown += t.msgsUnknown
		tot.unknownAcked += t.unknownAcked
		tot.unknownOnce += t.unknownOnce
		tot.slowest = max(tot.slowest, t.slowest)
	}
	return tallies, tot
}

// tallyMessage counts m's attempts into tallies, and its fate: when an
// attempt was answered unknown, was it acknowledged on a retry, and
// delivered exactly once to every subscriber, at the acknowledged offset?
func (tot *publishTotals) tallyMessage(m *clMsg, tallies []phaseTally) {
	st := m.stream
	tot.msgs++
	if m.acked && m.seenOffset != 0 && m.seenOffset != m.ackOffset {
		tot.misplacedAcks++
	}
	if !m.acked {
		tot.unresolved++
	}
	if m.gen > 0 {
		tot.newMsgID++
		if st.dups[m.seq] > 0 {
			tot.refusedDelivered++
		}
	}
	firstUnknown := -1
	for _, a := range m.attempts {
		t := &tallies[a.phase]
		t.count(a)
		if a.kind == answerUnknown && firstUnknown < 0 {
			firstUnknown = a.phase
		}
	}
	if firstUnknown < 0 {
		return
	}
	t := &tallies[firstUnknown]
	t.msgsUnknown++
	if m.acked {
		t.unknownAcked++
	}
	if m.acked && m.seenOffset == m.ackOffset && st.missing[m.seq] == 0 && st.dups[m.seq] == 0 &&
		(m.deliveries > 0 || st.room.members == 0) {
		t.unknownOnce++
	}
}

// count adds one attempt.
func (t *phaseTally) count(a clAttempt) {
	switch a.kind {
	case answerAcked:
		t.acked++
	case answerUnknown:
		t.unknown++
	case answerRefused:
		t.refused++
	case answerDropped:
		t.dropped++
	}
	if a.overdue {
		t.overdue++
	}
	if a.kind != answerNone && a.kind != answerDropped {
		t.slowest = max(t.slowest, a.answered.Sub(a.sent))
	}
}

// endTally is what the checks at the end found.
type endTally struct {
	missing     int // acknowledged messages a client never got (head or tail of its stream)
	netMissing  int // gaps the clients' trackers still hold
	early       int // streams that began before the subscription's place
	clientRooms int
}

// endChecks holds every client's streams against what was acknowledged:
// for each of its rooms and each publisher there, every message
// acknowledged at an offset after the client's first subscription must
// have arrived, from the first to the last. Run after every goroutine
// ended.
func (s *clusterRun) endChecks() endTally {
	var t endTally
	for _, c := range s.subs {
		for _, cr := range c.rooms {
			t.clientRooms++
			for pos, st := range cr.room.streams {
				var expFirst, expLast uint64
				for _, m := range st.msgs {
					if m.acked && m.ackOffset > cr.start {
						if expFirst == 0 {
							expFirst = m.seq
						}
						expLast = m.seq
					}
				}
				tr := &cr.trk[pos]
				t.netMissing += int(tr.Missing)
				first := cr.first[pos]
				if expFirst == 0 {
					continue
				}
				if first == 0 {
					st.mark(false, expFirst, expLast, 1)
					t.missing += int(expLast - expFirst + 1)
					continue
				}
				if first > expFirst {
					st.mark(false, expFirst, first-1, 1)
					t.missing += int(first - expFirst)
				}
				if first < expFirst {
					t.early++
				}
				if last := tr.Next() - 1; last < expLast {
					st.mark(false, last+1, expLast, 1)
					t.missing += int(expLast - last)
				}
			}
		}
	}
	return t
}

// tailNotes are the end's notes: refusals by code, epochs, what the
// servers logged.
func (s *clusterRun) tailNotes() []string {
	var notes []string
	s.mu.Lock()
	codes := make([]string, 0, len(s.refusals))
	for k, v := range s.refusals {
		codes = append(codes, fmt.Sprintf("%s ×%d", k, v))
	}
	epochs := make([]string, 0, len(s.epochs))
	for k := range s.epochs {
		epochs = append(epochs, k)
	}
	s.mu.Unlock()
	sort.Strings(codes)
	sort.Strings(epochs)
	notes = append(notes, "err answers by code (pubs and subs): "+strings.Join(codes, ", "))
	notes = append(notes, "epochs seen: "+strings.Join(epochs, " "))
	var pubs []string
	for _, p := range s.pubs {
		p.mu.Lock()
		pubs = append(pubs, fmt.Sprintf("%s %d connections", p.label, p.conns))
		p.mu.Unlock()
	}
	notes = append(notes, "publishers: "+strings.Join(pubs, ", "))
	return append(notes, s.fleet.logSummary()...)
}
