package cluster

// LoseAcks makes the server drop the stream's acknowledgements for s's
// appends (its inbox has no subscription), as when they are lost with a
// dead stream leader, until restore subscribes it again. For tests.
func LoseAcks(s *Stream) (restore func() error, err error) {
	if err := s.inbx.Unsubscribe(); err != nil {
		return nil, err
	}
	if err := s.nc.Flush(); err != nil {
		return nil, err
	}
	return func() error {
		sub, err := s.nc.Subscribe(s.app.inbox+".*", s.app.reply)
		if err != nil {
			return err
		}
		s.inbx = sub
		return s.nc.Flush()
	}, nil
}
