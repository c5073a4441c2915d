package kube

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
)

// Agent is an ephemeral container that faultline adds to a pod to act
// inside it (package agent): the faultline image with a command line of
// its own, in the pod's network namespace and, through
// targetContainerName, the target container's process namespace.
type Agent struct {
	Namespace, Pod, UID string
	// Name is the ephemeral container's, unique in the pod: ephemeral
	// containers are never removed, so each run names its own.
	Name string
	// Target is the container whose process namespace the agent joins.
	Target string
	Image  string
	Args   []string
	// NetAdmin adds the NET_ADMIN capability, which network faults need;
	// Root runs the agent as root (signals to another container's
	// processes); NetAdmin implies it.
	NetAdmin, Root bool
}

// ErrAgentGone says the pod is no more, and its agent with it: nothing of
// what the agent put in place is left.
var ErrAgentGone = errors.New("the pod is gone")

// ErrNoAgent says the pod has no agent container of that name: it was
// never added.
var ErrNoAgent = errors.New("no such agent container")

// AddAgent adds a's ephemeral container to its pod, if the pod is still
// the one selected (same UID). A refusal (no such pod, a name already
// taken, no permission) changes nothing: Refused says so.
func (c *Client) AddAgent(ctx context.Context, a Agent) error {
	pods := c.cs.CoreV1().Pods(a.Namespace)
	pod, err := pods.Get(ctx, a.Pod, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod %s/%s: %w", a.Namespace, a.Pod, err)
	}
	if a.UID != "" && string(pod.UID) != a.UID {
		return unchanged{fmt.Errorf("pod %s/%s was replaced since it was selected", a.Namespace, a.Pod)}
	}
	ec := corev1.EphemeralContainer{
		TargetContainerName: a.Target,
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: a.Name, Image: a.Image, Args: a.Args,
			ImagePullPolicy:          corev1.PullIfNotPresent,
			Stdin:                    true,
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		},
	}
	if a.NetAdmin || a.Root {
		// A capability added to a container works for root alone (it is
		// not an ambient one): the agent runs as root, with NET_ADMIN and
		// nothing else added, whatever the image's user.
		root, nonRoot := int64(0), false
		ec.SecurityContext = &corev1.SecurityContext{RunAsUser: &root, RunAsNonRoot: &nonRoot}
		if a.NetAdmin {
			ec.SecurityContext.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}
		}
	}
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, ec)
	if _, err := pods.UpdateEphemeralContainers(ctx, a.Pod, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("add ephemeral container %s to pod %s/%s: %w", a.Name, a.Namespace, a.Pod, err)
	}
	return nil
}

// AgentState is what the pod's status says of an agent container.
type AgentState struct {
	Running bool
	// Exited is set once the container has terminated, with its
	// termination message (the agent's last line).
	Exited  bool
	Message string
	// Waiting is why the container does not run yet (ErrImagePull, ...).
	Waiting string
}

// AgentStatus reads the state of the agent container name in a pod;
// ErrAgentGone when the pod is not there, ErrNoAgent when the container
// is not.
func (c *Client) AgentStatus(ctx context.Context, namespace, pod, name string) (AgentState, error) {
	p, err := c.cs.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return AgentState{}, fmt.Errorf("pod %s/%s: %w", namespace, pod, ErrAgentGone)
	}
	if err != nil {
		return AgentState{}, err
	}
	for _, s := range p.Status.EphemeralContainerStatuses {
		if s.Name != name {
			continue
		}
		switch {
		case s.State.Running != nil:
			return AgentState{Running: true}, nil
		case s.State.Terminated != nil:
			return AgentState{Exited: true, Message: strings.TrimSpace(s.State.Terminated.Message + " " + s.State.Terminated.Reason)}, nil
		case s.State.Waiting != nil:
			return AgentState{Waiting: strings.TrimSpace(s.State.Waiting.Reason + " " + s.State.Waiting.Message)}, nil
		}
		return AgentState{}, nil
	}
	for _, ec := range p.Spec.EphemeralContainers {
		if ec.Name == name {
			return AgentState{Waiting: "not started yet"}, nil
		}
	}
	return AgentState{}, fmt.Errorf("pod %s/%s: %s: %w", namespace, pod, name, ErrNoAgent)
}

// WaitAgent waits until the agent container runs. An image that cannot be
// pulled, or a container that exits first, is an error that says so.
func (c *Client) WaitAgent(ctx context.Context, namespace, pod, name string) error {
	var last AgentState
	for {
		st, err := c.AgentStatus(ctx, namespace, pod, name)
		switch {
		case err != nil:
			return err
		case st.Running:
			return nil
		case st.Exited:
			return fmt.Errorf("agent %s in pod %s/%s exited: %s", name, namespace, pod, st.Message)
		case strings.Contains(st.Waiting, "ErrImagePull") || strings.Contains(st.Waiting, "ImagePullBackOff") || strings.Contains(st.Waiting, "InvalidImageName"):
			return fmt.Errorf("agent %s in pod %s/%s: its image cannot be pulled: %s (set agent_image or --agent-image to an image the cluster can pull)", name, namespace, pod, st.Waiting)
		}
		last = st
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent %s in pod %s/%s did not start (%s): %w", name, namespace, pod, last.Waiting, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AgentConn is a stream to an agent's standard input and output
// (pods/attach): Send writes a line, Expect reads the next line that has
// one of the given prefixes.
type AgentConn struct {
	in     *io.PipeWriter
	lines  chan string
	done   chan struct{}
	mu     sync.Mutex
	err    error
	cancel context.CancelFunc
}

// Attach opens a stream to the agent container name of a pod.
func (c *Client) Attach(ctx context.Context, namespace, pod, name string) (*AgentConn, error) {
	if c.cfg == nil {
		return nil, errors.New("attach: the client has no configuration to stream with")
	}
	req := c.cs.CoreV1().RESTClient().Post().Namespace(namespace).Resource("pods").Name(pod).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: name, Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(c.cfg, "GET", req.URL().String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.cfg, "POST", req.URL())
	if err != nil {
		return nil, err
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	a := &AgentConn{in: inW, lines: make(chan string, 16), done: make(chan struct{}), cancel: cancel}
	go func() {
		var err error
		func() {
			// A panic in the stream is its end, not the runner's: the
			// runner still has faults to take back.
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("the stream panicked: %v", p)
				}
			}()
			err = exec.StreamWithContext(sctx, remotecommand.StreamOptions{Stdin: inR, Stdout: outW, Stderr: outW})
		}()
		if err == nil {
			err = io.EOF
		}
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		_ = outW.CloseWithError(err)
		_ = inR.CloseWithError(err)
	}()
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			for {
				select {
				case a.lines <- sc.Text():
				default: // full: the oldest goes, so that the newest (an answer) stays
					select {
					case <-a.lines:
					default:
					}
					continue
				}
				break
			}
		}
	}()
	return a, nil
}

// Send writes one line to the agent.
func (a *AgentConn) Send(line string) error {
	if _, err := io.WriteString(a.in, line+"\n"); err != nil {
		return fmt.Errorf("send %q to the agent: %w", line, err)
	}
	return nil
}

// Expect returns the agent's next line that starts with one of prefixes,
// or an error when the stream ends or ctx does first.
func (a *AgentConn) Expect(ctx context.Context, prefixes ...string) (string, error) {
	for {
		select {
		case line := <-a.lines:
			for _, p := range prefixes {
				if strings.HasPrefix(line, p) {
					return line, nil
				}
			}
		case <-a.done:
			for len(a.lines) > 0 {
				line := <-a.lines
				for _, p := range prefixes {
					if strings.HasPrefix(line, p) {
						return line, nil
					}
				}
			}
			a.mu.Lock()
			err := a.err
			a.mu.Unlock()
			return "", fmt.Errorf("the agent's stream ended: %w", err)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// Close ends the stream; the agent goes on, as its lease says.
func (a *AgentConn) Close() {
	_ = a.in.Close()
	a.cancel()
	<-a.done
}

// AgentAccess says what the client may not do of what running agents in
// namespace takes (add an ephemeral container, attach to it), as the API
// server decides it for the client's own identity; empty when it may.
func (c *Client) AgentAccess(ctx context.Context, namespace string) ([]string, error) {
	var missing []string
	for _, a := range []struct{ verb, sub string }{{"update", "ephemeralcontainers"}, {"create", "attach"}, {"get", ""}} {
		r, err := c.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{
			Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
				Verb: a.verb, Resource: "pods", Subresource: a.sub, Namespace: namespace}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("ask the API server what this account may do in %s: %w", namespace, err)
		}
		if !r.Status.Allowed {
			what := "pods"
			if a.sub != "" {
				what += "/" + a.sub
			}
			missing = append(missing, a.verb+" "+what)
		}
	}
	return missing, nil
}

// ErrNoAgentRights says the client may not run agents.
var ErrNoAgentRights = errors.New("grant the faultline-agent Role (deploy/kubernetes/agent-rbac.yaml)")

// CheckAgentAccess is AgentAccess as an error that says what to grant;
// nil when the client may run agents in namespace.
func (c *Client) CheckAgentAccess(ctx context.Context, namespace string) error {
	missing, err := c.AgentAccess(ctx, namespace)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("faults inside these pods run agents, but this account may not %s in namespace %s: %w", strings.Join(missing, ", "), namespace, ErrNoAgentRights)
	}
	return nil
}
