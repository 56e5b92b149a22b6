using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace MetaMae.Model.Distributed;

/// <summary>
/// A replica's data plane: the TCP port its ring predecessor connects to. A learner replica opens one when it starts
/// and advertises <see cref="Address"/> with its readiness; the group's ring is wired when the group forms
/// (<see cref="TcpRingTransport.Connect"/>). Akka keeps membership, formation and dissolution; only chunks travel here.
/// </summary>
public sealed class RingListener : IDisposable
{
    private readonly Socket socket;

    /// <summary>The advertised host (as remoting's) and the port bound: <c>host:port</c>.</summary>
    public string Address { get; }
    public int Port { get; }

    /// <summary>
    /// Binds <paramref name="bindHost"/> (an address or a name; empty or "0.0.0.0": every interface) on
    /// <paramref name="port"/>, or the next free of <paramref name="tries"/> ports from it (0: any free port), and
    /// advertises <paramref name="advertisedHost"/>.
    /// </summary>
    public RingListener(string bindHost, string advertisedHost, int port = 0, int tries = 1)
    {
        socket = PlaneSockets.Listen(bindHost, port, tries);
        Port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        Address = $"{advertisedHost}:{Port}";
    }

    /// <summary>
    /// Waits for rank <paramref name="from"/> of <paramref name="group"/> to connect; a connection that says another
    /// group or rank (a dissolved group's replica) is closed and the wait goes on.
    /// </summary>
    internal Socket Accept(int group, int from, DateTime deadline, CancellationToken cancel)
    {
        var hello = new byte[TcpRingTransport.HelloBytes];
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        bounded.CancelAfter(deadline - DateTime.UtcNow is var left && left > TimeSpan.Zero ? left : TimeSpan.Zero);
        while (true)
        {
            Socket peer;
            try
            {
                peer = socket.AcceptAsync(bounded.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
            {
                throw new CollectiveAbortedException($"replica {from} did not connect to this replica's data plane ({Address}) in time");
            }
            try
            {
                PlaneSockets.Tune(peer, deadline - DateTime.UtcNow);
                TcpRingTransport.ReadExactly(peer, hello);
                if (BinaryPrimitives.ReadUInt32LittleEndian(hello) == TcpRingTransport.Magic
                    && BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(4)) == group && BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(8)) == from)
                    return peer;
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
            }
            peer.Dispose();
        }
    }

    public void Dispose() => socket.Dispose();
}

/// <summary>
/// Ring chunks over plain TCP: one connection to the next replica, one from the previous, opened when the group
/// forms. A chunk is a 24-byte header (op, step, index, offset, count) and its values as raw little-endian fp32 or
/// bf16, written from preallocated buffers by a sender thread (so a replica keeps receiving while its sends are on
/// the wire) and read straight into a preallocated buffer, with no serializer and no per-chunk allocation. Large
/// socket buffers, Nagle off. A read waits at most the collective timeout; a dissolved group closes both connections,
/// which wakes a replica blocked on a dead peer.
/// </summary>
public sealed class TcpRingTransport : IRingTransport, IDisposable
{
    /// <summary>
    /// The ring's chunk on this transport: 1 Mi floats (4 MiB in fp32). Smaller chunks pay a thread hand-off each, which
    /// a busy machine turns into milliseconds: on 2 cores, 2 replicas all-reduced 29 MB in 15 ms with 1 Mi and 300 ms with
    /// 64 Ki (`bench allreduce --chunk-floats`). There is no frame limit here, unlike Akka.Remote's.
    /// </summary>
    public const int ChunkFloats = 1 << 20;
    internal const uint Magic = 0x47524D4D; // "MMRG"
    internal const int HelloBytes = 12;
    private const int HeaderBytes = 24;
    private const int SendBuffers = 4;

    private readonly Socket outgoing, incoming;
    private readonly TimeSpan timeout;
    private readonly CancellationToken dissolved;
    private readonly Func<string?> reason;
    private readonly BlockingCollection<(byte[] Buffer, int Length)> queue = new();
    private readonly BlockingCollection<byte[]> free = new();
    private readonly Thread sender;
    private readonly CancellationTokenRegistration onDissolve;
    private readonly byte[] header = new byte[HeaderBytes];
    private byte[] received = [];
    private int bufferBytes;
    private volatile Exception? sendFailure;

    private TcpRingTransport(Socket outgoing, Socket incoming, TimeSpan timeout, CancellationToken dissolved, Func<string?> reason)
    {
        this.outgoing = outgoing;
        this.incoming = incoming;
        this.timeout = timeout;
        this.dissolved = dissolved;
        this.reason = reason;
        sender = new Thread(SendLoop) { IsBackground = true, Name = "ring-sender" };
        sender.Start();
        onDissolve = dissolved.Register(Close);
    }

    /// <summary>
    /// Wires replica <paramref name="rank"/> of <paramref name="group"/> into its ring: connects to the next replica's
    /// data plane (<paramref name="addresses"/>[rank + 1]) and accepts the previous one's, within
    /// <paramref name="timeout"/>; a dissolved group (<paramref name="dissolved"/>) ends the wait.
    /// </summary>
    public static TcpRingTransport Connect(RingListener listener, int group, int rank, IReadOnlyList<string> addresses, TimeSpan timeout,
        CancellationToken dissolved, Func<string?> reason)
    {
        int n = addresses.Count, next = (rank + 1) % n, previous = (rank - 1 + n) % n;
        var deadline = DateTime.UtcNow + timeout;
        var accept = Task.Run(() => listener.Accept(group, previous, deadline, dissolved));
        Socket? outgoing = null;
        try
        {
            outgoing = Dial(addresses[next], group, rank, deadline, dissolved);
            var incoming = accept.GetAwaiter().GetResult();
            return new TcpRingTransport(outgoing, incoming, timeout, dissolved, reason);
        }
        catch (Exception e)
        {
            outgoing?.Dispose();
            accept.ContinueWith(t => t.Result.Dispose(), TaskContinuationOptions.OnlyOnRanToCompletion);
            if (dissolved.IsCancellationRequested) throw new CollectiveAbortedException($"the replica group was dissolved: {reason() ?? "no reason given"}");
            throw e as CollectiveAbortedException ?? new CollectiveAbortedException($"could not wire the ring of group {group}: {e.Message}");
        }
    }

    /// <summary>Connects to <paramref name="address"/> (host:port), retrying until the deadline, and says who it is.</summary>
    private static Socket Dial(string address, int group, int rank, DateTime deadline, CancellationToken cancel)
    {
        var (host, port) = PlaneSockets.HostPort(address);
        var hello = new byte[HelloBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(hello, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), group);
        BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(8), rank);
        while (true)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                var left = deadline - DateTime.UtcNow;
                socket.ConnectAsync(host, port, cancel).AsTask().WaitAsync(left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1), cancel).GetAwaiter().GetResult();
                PlaneSockets.Tune(socket, left);
                socket.Send(hello);
                return socket;
            }
            catch (Exception e) when (e is SocketException or TimeoutException && DateTime.UtcNow < deadline)
            {
                socket.Dispose();
                Thread.Sleep(50);
            }
            catch
            {
                socket.Dispose();
                if (cancel.IsCancellationRequested) throw;
                throw new CollectiveAbortedException($"the next replica's data plane {address} did not answer in time");
            }
        }
    }

    internal static void ReadExactly(Socket socket, Span<byte> into) =>
        PlaneSockets.ReadExactly(socket, into, "the previous replica closed its connection (it left the group)");

    public void Send(long op, int step, int index, int offset, ReadOnlySpan<float> values, WirePrecision precision)
    {
        int payload = values.Length * (precision == WirePrecision.BFloat16 ? 2 : 4);
        var buffer = TakeBuffer(HeaderBytes + payload);
        var span = buffer.AsSpan();
        BinaryPrimitives.WriteInt64LittleEndian(span, op);
        BinaryPrimitives.WriteInt32LittleEndian(span[8..], step);
        BinaryPrimitives.WriteInt32LittleEndian(span[12..], index);
        BinaryPrimitives.WriteInt32LittleEndian(span[16..], offset);
        BinaryPrimitives.WriteInt32LittleEndian(span[20..], values.Length);
        if (precision == WirePrecision.BFloat16) Bf16.Encode(values, MemoryMarshal.Cast<byte, ushort>(span.Slice(HeaderBytes, payload)));
        else MemoryMarshal.AsBytes(values).CopyTo(span[HeaderBytes..]);
        try
        {
            queue.Add((buffer, HeaderBytes + payload));
        }
        catch (InvalidOperationException e) // closed: dissolved, or the sender failed
        {
            throw Aborted(e);
        }
    }

    public void Receive(long op, int step, int index, int offset, Span<float> target, bool accumulate, WirePrecision precision)
    {
        int width = precision == WirePrecision.BFloat16 ? 2 : 4;
        try
        {
            ReadExactly(incoming, header);
            var h = header.AsSpan();
            long gotOp = BinaryPrimitives.ReadInt64LittleEndian(h);
            int gotStep = BinaryPrimitives.ReadInt32LittleEndian(h[8..]), gotIndex = BinaryPrimitives.ReadInt32LittleEndian(h[12..]);
            int gotOffset = BinaryPrimitives.ReadInt32LittleEndian(h[16..]), count = BinaryPrimitives.ReadInt32LittleEndian(h[20..]);
            if ((gotOp, gotStep, gotIndex, gotOffset, count) != (op, step, index, offset, target.Length))
                throw new CollectiveAbortedException($"the previous replica sent chunk ({gotOp}, {gotStep}, {gotIndex}) of [{gotOffset}, +{count}), " +
                                                     $"expected ({op}, {step}, {index}) of [{offset}, +{target.Length}): the replicas disagree on the step");
            int bytes = count * width;
            if (received.Length < bytes) received = new byte[Math.Max(bytes, bufferBytes)];
            ReadExactly(incoming, received.AsSpan(0, bytes));
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException)
        {
            throw Aborted(e);
        }
        var payload = received.AsSpan(0, target.Length * width);
        if (precision == WirePrecision.BFloat16)
        {
            var half = MemoryMarshal.Cast<byte, ushort>(payload);
            if (accumulate) Bf16.AddTo(half, target);
            else Bf16.Decode(half, target);
        }
        else
        {
            var values = MemoryMarshal.Cast<byte, float>(payload);
            if (accumulate) Vectors.AddTo(values, target);
            else values.CopyTo(target);
        }
    }

    private CollectiveAbortedException Aborted(Exception e)
    {
        if (dissolved.IsCancellationRequested) return new CollectiveAbortedException($"the replica group was dissolved: {reason() ?? "no reason given"}");
        if (sendFailure is { } s) return new CollectiveAbortedException($"sending to the next replica failed: {s.Message}", peerLost: true);
        if (e is SocketException { SocketErrorCode: SocketError.TimedOut })
            return new CollectiveAbortedException(
                $"no gradient chunk from the previous replica within {timeout.TotalSeconds:0} s (collective_timeout_seconds); a peer is gone or stuck");
        return new CollectiveAbortedException($"the connection from the previous replica failed: {e.Message}", peerLost: true);
    }

    /// <summary>A send buffer of at least <paramref name="bytes"/>: one of a few made once, back from the sender thread when written.</summary>
    private byte[] TakeBuffer(int bytes)
    {
        if (bytes > bufferBytes)
        {
            // The first chunk sets the size (later chunks of a collective are never larger); the pool is made once.
            while (free.TryTake(out _)) { }
            bufferBytes = bytes;
            for (int i = 0; i < SendBuffers; i++) free.Add(GC.AllocateUninitializedArray<byte>(bytes, pinned: true));
        }
        try
        {
            while (true)
            {
                if (sendFailure is { } f) throw new CollectiveAbortedException($"sending to the next replica failed: {f.Message}", peerLost: true);
                if (free.TryTake(out var b, 100, dissolved) && b.Length >= bytes) return b;
            }
        }
        catch (OperationCanceledException)
        {
            throw new CollectiveAbortedException($"the replica group was dissolved: {reason() ?? "no reason given"}");
        }
    }

    private void SendLoop()
    {
        try
        {
            foreach (var (buffer, length) in queue.GetConsumingEnumerable())
            {
                int sent = 0;
                while (sent < length) sent += outgoing.Send(buffer, sent, length - sent, SocketFlags.None);
                if (buffer.Length >= bufferBytes) free.Add(buffer);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
        {
            sendFailure = e;
            incoming.Dispose(); // wake the receiver, which reports the failure
        }
    }

    private void Close()
    {
        outgoing.Dispose();
        incoming.Dispose();
        queue.CompleteAdding();
    }

    public void Dispose()
    {
        onDissolve.Dispose();
        Close();
        sender.Join(TimeSpan.FromSeconds(5));
    }
}

/// <summary>What the node's TCP planes (gradients between replicas, batches from data nodes) share: binding, tuning, reading.</summary>
public static class PlaneSockets
{
    /// <summary>Socket buffers of 4 MiB each way: a chunk or a batch is on the wire without waiting for acknowledgements.</summary>
    public const int SocketBuffer = 4 << 20;

    /// <summary>
    /// A listening socket on <paramref name="bindHost"/> (an address or a name; empty or "0.0.0.0": every interface)
    /// at <paramref name="port"/>, or the next free of <paramref name="tries"/> ports from it (0: any free port).
    /// </summary>
    public static Socket Listen(string bindHost, int port = 0, int tries = 1)
    {
        var address = string.IsNullOrEmpty(bindHost) || bindHost == "0.0.0.0" ? IPAddress.Any
            : IPAddress.TryParse(bindHost, out var ip) ? ip
            : Dns.GetHostAddresses(bindHost).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork)
              ?? throw new ArgumentException($"the data plane cannot bind '{bindHost}': no IPv4 address");
        SocketException? last = null;
        for (int i = 0; i < Math.Max(1, tries); i++)
        {
            var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                s.Bind(new IPEndPoint(address, port == 0 ? 0 : port + i));
                s.Listen(16);
                return s;
            }
            catch (SocketException e)
            {
                s.Dispose();
                last = e;
            }
        }
        throw new IOException($"the data plane could not bind {address} on ports {port}..{port + tries - 1}: {last?.Message}", last);
    }

    /// <summary>Nagle off, large buffers; a read waits at most <paramref name="timeout"/> (null: as long as it takes).</summary>
    public static void Tune(Socket socket, TimeSpan? timeout)
    {
        socket.NoDelay = true;
        socket.SendBufferSize = SocketBuffer;
        socket.ReceiveBufferSize = SocketBuffer;
        socket.ReceiveTimeout = timeout is { } t ? (int)Math.Clamp(t.TotalMilliseconds, 1, int.MaxValue) : 0;
    }

    /// <summary>Fills <paramref name="into"/> from the socket; the peer's end of stream is an error saying <paramref name="closed"/>.</summary>
    public static void ReadExactly(Socket socket, Span<byte> into, string closed)
    {
        while (into.Length > 0)
        {
            int n = socket.Receive(into);
            if (n == 0) throw new EndOfStreamException(closed);
            into = into[n..];
        }
    }

    /// <summary>Splits <c>host:port</c> (the last colon separates the port).</summary>
    public static (string Host, int Port) HostPort(string address)
    {
        int colon = address.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(address[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port) || port > 65535)
            throw new FormatException($"'{address}' is not host:port");
        return (address[..colon], port);
    }
}
