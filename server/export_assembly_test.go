package server

// SetMaxAssembling lowers the bytes messages in progress may hold
// together (maxAssembling) on s, for a test.
func SetMaxAssembling(s *Server, n int64) { s.maxAssembling.Store(n) }

// Assembling is what messages in progress hold now on s.
func Assembling(s *Server) int64 { return s.assembling.Load() }

// SkippedForTest is what the cluster log tells the server when it
// removed messages before this instance read them (bus.Host.Skipped).
func SkippedForTest(s *Server, to uint64) { host{s}.Skipped(to) }
