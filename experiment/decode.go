package experiment

import (
	"maps"
	"slices"

	"gopkg.in/yaml.v3"

	"github.com/faultline/faultline/internal/decode"
)

// Error is one problem in an experiment file, with its place and field:
// "slow.yaml:12:7: faults[2].latency.delay: must be > 0, got -5ms".
type Error = decode.Error

// Pos is a place in an experiment file.
type Pos = decode.Pos

// decoder is package decode's, with the experiment file's own parts as
// methods.
type decoder struct {
	*decode.Decoder
	// actions are the action keys of families registered from outside.
	actions map[string]ActionDecoder
	// agentImage is Options.AgentImage.
	agentImage string
	// conditionAt holds, for each field of conditions read ("stop_when"),
	// the node each one came from, for messages: an entry that could not
	// be read is left out, so the index in the list no longer says.
	conditionAt map[string][]*yaml.Node
}

// actionKeys are every action key the decoder knows, built-in first.
func (d *decoder) actionKeys() []string {
	keys := slices.Clone(actionKeys)
	for _, k := range slices.Sorted(maps.Keys(d.actions)) {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

type fields = decode.Fields

func pos(n *yaml.Node) Pos { return decode.PosOf(n) }
