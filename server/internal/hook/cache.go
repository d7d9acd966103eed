package hook

import (
	"sync"
	"time"
)

// Cache remembers answers per key until they expire. It holds at most
// Max entries: past it the expired ones go first, then everything (a
// cache is an optimisation, never a source of truth). Safe for
// concurrent use; Get is a map lookup under a mutex.
type Cache[V any] struct {
	Max int

	mu sync.Mutex
	m  map[string]cached[V]
}

type cached[V any] struct {
	v     V
	until time.Time
}

// Get returns key's value if it has not expired at now.
func (c *Cache[V]) Get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put keeps v for key until until.
func (c *Cache[V]) Put(key string, v V, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cached[V]{}
	}
	if len(c.m) >= c.Max {
		now := time.Now()
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.Max {
			clear(c.m)
		}
	}
	c.m[key] = cached[V]{v, until}
}
