// Package agentbench measures tabby-agent on a real kernel: the time from
// process start to ready on a node with 1,000 (and 5,000) peers, and the
// agent's resident memory there. See RESULTS.md for the commands and numbers.
package agentbench
