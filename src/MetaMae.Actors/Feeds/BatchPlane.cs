using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using Akka;
using Akka.Event;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Model.Distributed;
using MetaMae.Protocol;

namespace MetaMae.Actors.Feeds;

/// <summary>
/// A data node's batch plane: the TCP port learners on other nodes pull their feeds from, beside Akka.Remote (which
/// keeps offering, membership and failure handling). Each feed waits here under a one-time token until its learner
/// connects (<see cref="Offer"/>); then a thread of its own pulls the next batch from the feed's stream only when the
/// last one is on the wire, so TCP's flow control is the stream's back-pressure from end to end: a learner that stops
/// reading stops the socket, the puller and the pipeline behind it. Frames are <see cref="BatchFrames"/>: the arrays'
/// bytes, no serializer. A learner that goes away (its socket closes) shuts its feed down; a feed nobody claims within
/// the subscription timeout is shut down too, as a stream reference's would be.
/// </summary>
public sealed class BatchPlaneServer : IDisposable
{
    internal const int HelloBytes = 20; // magic, token
    private static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(10);

    private sealed record Pending(ISinkQueue<Batch> Queue, UniqueKillSwitch Kill, string Description, Timer Expiry);

    private readonly Socket listener;
    private readonly ConcurrentDictionary<Guid, Pending> pending = new();
    private readonly ConcurrentDictionary<Socket, byte> connections = new();
    private readonly CancellationTokenSource stopping = new();
    private readonly ILoggingAdapter log;
    private readonly TimeSpan subscriptionTimeout;

    /// <summary>host:port, the host as remoting advertises it.</summary>
    public string Address { get; }

    public BatchPlaneServer(string bindHost, string advertisedHost, int port, int tries, TimeSpan subscriptionTimeout, ILoggingAdapter log)
    {
        listener = PlaneSockets.Listen(bindHost, port, tries);
        Address = $"{advertisedHost}:{((System.Net.IPEndPoint)listener.LocalEndPoint!).Port}";
        this.subscriptionTimeout = subscriptionTimeout;
        this.log = log;
        _ = Task.Run(AcceptLoop);
    }

    /// <summary>
    /// The sink a feed's stream runs into: it holds at most two batches beyond those on the wire. Materialize it, then
    /// <see cref="Offer"/> the queue.
    /// </summary>
    public static Sink<Batch, ISinkQueue<Batch>> Sink() => Akka.Streams.Dsl.Sink.Queue<Batch>().WithAttributes(Attributes.CreateInputBuffer(2, 2));

    /// <summary>Puts a feed up for its learner to claim; <paramref name="kill"/> ends it when nobody does or its learner leaves.</summary>
    public BatchChannel Offer(ISinkQueue<Batch> queue, UniqueKillSwitch kill, string description)
    {
        var token = Guid.NewGuid();
        var expiry = new Timer(_ =>
        {
            if (!pending.TryRemove(token, out var unclaimed)) return;
            unclaimed.Kill.Shutdown();
            unclaimed.Expiry.Dispose();
            log.Info("{0}: no learner claimed it within {1:F0} s; it is closed", description, subscriptionTimeout.TotalSeconds);
        });
        pending[token] = new Pending(queue, kill, description, expiry);
        expiry.Change(subscriptionTimeout, Timeout.InfiniteTimeSpan);
        return new BatchChannel(Address, token);
    }

    private async Task AcceptLoop()
    {
        while (!stopping.IsCancellationRequested)
        {
            Socket peer;
            try
            {
                peer = await listener.AcceptAsync(stopping.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (stopping.IsCancellationRequested) return;
                continue;
            }
            connections[peer] = 0;
            if (stopping.IsCancellationRequested) peer.Dispose();
            new Thread(() => Serve(peer)) { IsBackground = true, Name = "batch-plane feed" }.Start();
        }
    }

    private void Serve(Socket peer)
    {
        Pending? feed = null;
        try
        {
            PlaneSockets.Tune(peer, HelloTimeout);
            var hello = new byte[HelloBytes];
            PlaneSockets.ReadExactly(peer, hello, "the learner closed the connection before naming its feed");
            using var stream = new BufferedStream(new NetworkStream(peer, ownsSocket: false), 64 << 10);
            if (BinaryPrimitives.ReadUInt32LittleEndian(hello) != BatchFrames.Magic) return; // not one of ours
            if (!pending.TryRemove(new Guid(hello.AsSpan(4, 16)), out feed))
            {
                BatchFrames.WriteError(stream, "no such feed on this data node (claimed already, or not claimed in time and closed)");
                stream.Flush();
                return;
            }
            feed.Expiry.Dispose();
            peer.ReceiveTimeout = 0;
            while (true)
            {
                Akka.Util.Option<Batch> next;
                try
                {
                    next = feed.Queue.PullAsync().GetAwaiter().GetResult();
                }
                catch (Exception e)
                {
                    // The pipeline failed (its own error reaches the coordinator through the data host): say why, and end.
                    BatchFrames.WriteError(stream, Failures.Describe(e));
                    stream.Flush();
                    return;
                }
                if (!next.HasValue)
                {
                    BatchFrames.WriteEnd(stream);
                    stream.Flush();
                    return;
                }
                FailPoints.Hit("data.plane-send", next.Value.Sequence);
                BatchFrames.WriteBatch(stream, next.Value);
                stream.Flush();
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            // The learner's side ended (a restart, a re-formed group, its node gone): so does the feed.
            if (feed is not null) log.Info("{0}: the learner's connection ended ({1}); the feed is shut down", feed.Description, e.Message);
        }
        catch (Exception e)
        {
            // Anything else breaks this connection off (the learner asks for its feed again), never the node.
            peer.LingerState = new LingerOption(true, 0); // a reset, as a broken network would
            log.Warning("{0}: the connection to its learner is broken off: {1}", feed?.Description ?? "a feed", Failures.Describe(e));
        }
        finally
        {
            feed?.Kill.Shutdown();
            connections.TryRemove(peer, out _);
            peer.Dispose();
        }
    }

    /// <summary>Stops listening, shuts every unclaimed feed down and closes every connection (its learner's feed breaks off).</summary>
    public void Dispose()
    {
        stopping.Cancel();
        listener.Dispose();
        foreach (var peer in connections.Keys) peer.Dispose();
        foreach (var token in pending.Keys)
            if (pending.TryRemove(token, out var p))
            {
                p.Expiry.Dispose();
                p.Kill.Shutdown();
            }
    }
}

/// <summary>
/// The learner's end of a batch-plane feed: a source that connects to the data node and claims the feed by its token;
/// a reader thread of the connection's own reads frames into a queue of two, so at most two batches are read ahead and
/// a full queue stops the reads (and, through TCP, the data node). Blocking reads stay off the thread pool, which the
/// actors share (on it, a blocked read stalled other work by a second at a time). <paramref name="cancel"/> closes the
/// connection, which frees a read blocked on a peer that went silent.
/// </summary>
public static class BatchPlaneSource
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);
    private const int ReadAhead = 2;

    public static Source<Batch, NotUsed> Of(BatchChannel channel, CancellationToken cancel) =>
        Source.UnfoldResourceAsync(() => Connection.Open(channel, cancel), c => c.Next(), c => c.Close());

    private sealed class Connection
    {
        private readonly Socket socket;
        private readonly CancellationTokenRegistration onCancel;
        private readonly string source;
        private readonly System.Threading.Channels.Channel<Batch> frames =
            System.Threading.Channels.Channel.CreateBounded<Batch>(new System.Threading.Channels.BoundedChannelOptions(ReadAhead) { SingleReader = true, SingleWriter = true });

        private Connection(Socket socket, string address, CancellationToken cancel)
        {
            this.socket = socket;
            source = $"the batch feed from data node {address}";
            onCancel = cancel.Register(socket.Dispose);
            new Thread(ReadLoop) { IsBackground = true, Name = "batch-plane reader" }.Start();
        }

        public static async Task<Connection> Open(BatchChannel channel, CancellationToken cancel)
        {
            var (host, port) = PlaneSockets.HostPort(channel.Address);
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancel);
                bounded.CancelAfter(ConnectTimeout);
                await socket.ConnectAsync(host, port, bounded.Token);
                PlaneSockets.Tune(socket, null);
                var hello = new byte[BatchPlaneServer.HelloBytes];
                BinaryPrimitives.WriteUInt32LittleEndian(hello, BatchFrames.Magic);
                channel.Token.TryWriteBytes(hello.AsSpan(4));
                await socket.SendAsync(hello, bounded.Token);
                return new Connection(socket, channel.Address, cancel);
            }
            catch (Exception e)
            {
                socket.Dispose();
                throw new IOException($"could not reach data node {channel.Address}'s batch plane: {e.Message}", e);
            }
        }

        private void ReadLoop()
        {
            try
            {
                using var stream = new BufferedStream(new NetworkStream(socket, ownsSocket: false), 64 << 10);
                while (BatchFrames.Read(stream, source) is { } batch)
                    if (!frames.Writer.WaitToWriteAsync().AsTask().GetAwaiter().GetResult() || !frames.Writer.TryWrite(batch)) return; // closed
                frames.Writer.TryComplete();
            }
            catch (Exception e) when (e is EndOfStreamException or SocketException or ObjectDisposedException
                                          || (e is IOException && e.InnerException is SocketException or ObjectDisposedException))
            {
                frames.Writer.TryComplete(new IOException($"{source} broke off: {e.Message}", e));
            }
            catch (Exception e)
            {
                frames.Writer.TryComplete(e); // the data node's reason, or a frame that breaks the format
            }
        }

        public async Task<Akka.Util.Option<Batch>> Next()
        {
            try
            {
                return await frames.Reader.WaitToReadAsync() && frames.Reader.TryRead(out var batch) ? batch : Akka.Util.Option<Batch>.None;
            }
            catch (System.Threading.Channels.ChannelClosedException e) when (e.InnerException is { } cause)
            {
                throw cause;
            }
        }

        public Task<Done> Close()
        {
            frames.Writer.TryComplete();
            onCancel.Dispose();
            socket.Dispose(); // ends a read in progress
            return Task.FromResult(Done.Instance);
        }
    }
}
