package store

// Subscription delivers a coalesced signal after commits: however many
// commits happen while the subscriber is busy, it wakes once and then reads
// the current state.
type Subscription struct {
	c chan struct{}
	s *Store
}

// Subscribe registers a new subscriber. Call Close when done.
func (s *Store) Subscribe() *Subscription {
	sub := &Subscription{c: make(chan struct{}, 1), s: s}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	return sub
}

// Updated is signalled after one or more commits.
func (sub *Subscription) Updated() <-chan struct{} { return sub.c }

// Close unregisters; safe to call twice.
func (sub *Subscription) Close() {
	sub.s.mu.Lock()
	delete(sub.s.subs, sub)
	sub.s.mu.Unlock()
}

func (s *Store) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		select {
		case sub.c <- struct{}{}:
		default: // already signalled: coalesce
		}
	}
}
