package flags

import (
	"io"
	"strings"
	"testing"
)

// An unknown flag names the closest one, as a mistyped variable does.
func TestUnknownFlagDidYouMean(t *testing.T) {
	_, _, err := Load([]string{"--max-mesage", "1MiB"}, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--max-mesage is not a loopcast flag; did you mean --max-message?") {
		t.Fatalf("error %v", err)
	}
}
