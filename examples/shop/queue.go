package shop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The shop's broker: one JetStream stream with a subject per kind of
// message. Orders are announced on subjectOrders (the confirmation e-mail
// and the stock count read them); payments that wait for the card
// processor travel on subjectPayments to the payment consumer, and orders
// that wait for the database on subjectIntake.
const (
	streamName      = "SHOP"
	subjectOrders   = "shop.orders"
	subjectPayments = "shop.payments"
	// subjectIntake carries the orders that the database did not take in
	// time: the intake consumer writes each once the database answers.
	subjectIntake = "shop.intake"
	// dedupWindow is how long the broker remembers a message id: an
	// outbox row published twice (by two instances, or again after a lost
	// acknowledgement) within it is stored once.
	dedupWindow = 2 * time.Minute
)

// QueueConfig configures RunQueue.
type QueueConfig struct {
	Listen string // HOST:PORT
	// StoreDir holds the stream's files, so that a broker killed and
	// started again on the same directory keeps what it had accepted.
	// Default: a temporary directory, removed when RunQueue returns.
	StoreDir string
	Logger   *slog.Logger
}

// RunQueue runs the shop's message broker, a NATS server with JetStream
// (the server's own Go module, in this process), creates the shop's stream
// when missing, and serves until ctx ends.
func RunQueue(ctx context.Context, cfg QueueConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("queue: listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("queue: listen %q: bad port", cfg.Listen)
	}
	if cfg.StoreDir == "" {
		if cfg.StoreDir, err = os.MkdirTemp("", "faultline-queue-"); err != nil {
			return err
		}
		defer os.RemoveAll(cfg.StoreDir)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "shop-queue", Host: host, Port: port,
		JetStream: true, StoreDir: cfg.StoreDir, JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30,
		NoSigs: true, NoLog: true, DisableJetStreamBanner: true,
	})
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	if !s.ReadyForConnections(15 * time.Second) {
		return fmt.Errorf("queue: not accepting connections on %s after 15s", cfg.Listen)
	}
	if err := createStream(ctx, s.ClientURL()); err != nil {
		return err
	}
	cfg.Logger.Info("queue serving", "listen", cfg.Listen, "store", cfg.StoreDir)
	<-ctx.Done()
	return nil
}

func createStream(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Name("shop-queue-setup"))
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(sctx, jetstream.StreamConfig{
		Name: streamName, Subjects: []string{subjectOrders, subjectPayments, subjectIntake},
		Storage: jetstream.FileStorage, Duplicates: dedupWindow, Retention: jetstream.LimitsPolicy,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", streamName, err)
	}
	return nil
}

// broker is a checkout instance's connection to the queue. It connects in
// the background and reconnects for ever: an instance starts, and serves,
// while the broker is down.
type broker struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func dialBroker(url string, log *slog.Logger) (*broker, error) {
	nc, err := nats.Connect(url, nats.Name("shop-checkout"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.ReconnectJitter(100*time.Millisecond, 0),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("queue disconnected", "err", err) }),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("queue reconnected") }))
	if err != nil {
		return nil, fmt.Errorf("queue %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &broker{nc: nc, js: js}, nil
}

// publish stores one message on the stream and waits for the broker's
// acknowledgement; msgID makes a second publication of the same message
// a no-op within dedupWindow. Without a deadline on ctx, JetStream's own
// default (5 s) bounds the wait.
func (b *broker) publish(ctx context.Context, subject, msgID string, payload []byte) error {
	_, err := b.js.Publish(ctx, subject, payload, jetstream.WithMsgID(msgID))
	return err
}

// consume delivers the messages of subject to handle through the durable
// consumer name (shared by every instance: each message goes to one of
// them) until ctx ends. While the broker is down or the stream missing it
// tries again, every half second.
func (b *broker) consume(ctx context.Context, log *slog.Logger, name, subject string, handle func(jetstream.Msg)) {
	for ctx.Err() == nil {
		err := b.consumeOnce(ctx, log, name, subject, handle)
		if err != nil && ctx.Err() == nil {
			log.Debug("queue consumer not running", "consumer", name, "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (b *broker) consumeOnce(ctx context.Context, log *slog.Logger, name, subject string, handle func(jetstream.Msg)) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	cons, err := b.js.CreateOrUpdateConsumer(cctx, streamName, jetstream.ConsumerConfig{
		Durable: name, FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second,
	})
	cancel()
	if err != nil {
		return err
	}
	gone := make(chan error, 1)
	cc, err := cons.Consume(handle, jetstream.PullExpiry(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			// A consumer the broker no longer knows (its store was lost)
			// is set up again; other errors pass with the reconnect.
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select {
				case gone <- err:
				default:
				}
			}
		}))
	if err != nil {
		return err
	}
	log.Info("queue consumer running", "consumer", name, "subject", subject)
	defer func() {
		cc.Stop()
		select { // the handler under way finishes first
		case <-cc.Closed():
		case <-time.After(5 * time.Second):
		}
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-gone:
		return err
	}
}

func (b *broker) close() { b.nc.Close() }
