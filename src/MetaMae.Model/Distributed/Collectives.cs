using System.Runtime.InteropServices;
using System.Collections.Concurrent;
using System.Numerics;

namespace MetaMae.Model.Distributed;

/// <summary>How gradients travel between replicas; accumulation is always fp32.</summary>
public enum WirePrecision
{
    Float32,
    /// <summary>bfloat16 on the wire (round to nearest even): half the bytes, 8 bits of mantissa.</summary>
    BFloat16,
}

/// <summary>
/// The replicas of one data-parallel group, as a learner sees them: its rank, how many there are, and an element-wise
/// sum over all of them. Every replica must make the same calls in the same order (as with a DDP process group).
/// </summary>
public interface ICollective
{
    int Rank { get; }
    int Size { get; }

    /// <summary>
    /// Replaces data[0..count) with its element-wise sum over every replica, bit-identical on all of them (the order
    /// of additions is fixed). Blocks until done; throws <see cref="CollectiveAbortedException"/> when the group is
    /// dissolved or a peer stays silent past the timeout.
    /// </summary>
    void AllReduceSum(float[] data, int count, WirePrecision precision = WirePrecision.Float32);
}

/// <summary>One learner alone: the sum over one replica is the data itself.</summary>
public sealed class SoloCollective : ICollective
{
    public static readonly SoloCollective Instance = new();
    public int Rank => 0;
    public int Size => 1;
    public void AllReduceSum(float[] data, int count, WirePrecision precision = WirePrecision.Float32) { }
}

/// <summary>
/// A collective could not complete: the group was dissolved, or a peer did not answer in time. <see cref="PeerLost"/>:
/// a ring neighbour's connection broke, most likely because that replica failed (its own report says why).
/// </summary>
public sealed class CollectiveAbortedException(string message, bool peerLost = false) : Exception(message)
{
    public bool PeerLost { get; } = peerLost;
}

/// <summary>
/// One piece of a ring all-reduce in flight: operation <see cref="Op"/> (a per-group counter every replica advances
/// in step), ring step <see cref="Step"/> (0 .. 2(N-1)-1), chunk <see cref="Index"/> of that step's segment, covering
/// elements [<see cref="Offset"/>, Offset + Count) of the buffer. Exactly one of the payloads is set.
/// </summary>
public sealed record RingChunk(int Group, long Op, int Step, int Index, int Offset, int Count, float[]? Values, ushort[]? Half);

/// <summary>
/// Chunks that arrived for a replica, waited for by key. Posting is thread-safe (the transport's thread); taking
/// blocks the learner's thread until the chunk is there, the group is dissolved, or the timeout passes.
/// </summary>
public sealed class ChunkInbox(TimeSpan timeout)
{
    private readonly ConcurrentDictionary<(long Op, int Step, int Index), TaskCompletionSource<RingChunk>> slots = new();
    private readonly CancellationTokenSource dissolved = new();
    private string? reason;

    public TimeSpan Timeout { get; } = timeout;
    public bool IsDissolved => dissolved.IsCancellationRequested;
    /// <summary>Cancelled when the group is dissolved (a transport of its own closes its connections on it).</summary>
    public CancellationToken Dissolved => dissolved.Token;
    public string? Reason => reason;

    private TaskCompletionSource<RingChunk> Slot((long, int, int) key) =>
        slots.GetOrAdd(key, _ => new TaskCompletionSource<RingChunk>(TaskCreationOptions.RunContinuationsAsynchronously));

    public void Post(RingChunk chunk) => Slot((chunk.Op, chunk.Step, chunk.Index)).TrySetResult(chunk);

    public RingChunk Take(long op, int step, int index)
    {
        var key = (op, step, index);
        var task = Slot(key).Task;
        try
        {
            if (!task.Wait(Timeout, dissolved.Token))
                throw new CollectiveAbortedException(
                    $"no gradient chunk from the previous replica within {Timeout.TotalSeconds:0} s (collective_timeout_seconds); a peer is gone or stuck");
        }
        catch (OperationCanceledException)
        {
            throw new CollectiveAbortedException($"the replica group was dissolved: {reason ?? "no reason given"}");
        }
        slots.TryRemove(key, out _);
        return task.Result;
    }

    /// <summary>Wakes every waiter with <see cref="CollectiveAbortedException"/>; used when a peer is lost.</summary>
    public void Dissolve(string why)
    {
        reason = why;
        dissolved.Cancel();
    }
}

/// <summary>
/// How a ring moves its chunks: a chunk of the buffer goes to the next replica, and the previous replica's chunk of
/// the same (operation, step, index) is taken and added to, or copied into, the buffer. Chunks from one replica arrive
/// in the order they were sent. The transport owns the wire format (fp32, or bf16 rounded to nearest even).
/// </summary>
public interface IRingTransport
{
    /// <summary>Sends <paramref name="values"/> (the elements at <paramref name="offset"/>) to the next replica; returns once they may change.</summary>
    void Send(long op, int step, int index, int offset, ReadOnlySpan<float> values, WirePrecision precision);

    /// <summary>Takes the previous replica's chunk and adds it into <paramref name="target"/> (or copies it over); blocks until it is there.</summary>
    void Receive(long op, int step, int index, int offset, Span<float> target, bool accumulate, WirePrecision precision);
}

/// <summary>
/// Ring all-reduce (reduce-scatter, then all-gather) over any <see cref="IRingTransport"/>: 2(N-1) steps, each moving
/// 1/N of the buffer, in chunks of at most <see cref="ChunkFloats"/> elements so a message stays under the transport's
/// frame size. Pipelined: a chunk is passed on as soon as it is reduced, without waiting for the rest of its segment.
/// Segment k is summed in the fixed order k, k+1, ..., k-1 (mod N) and then copied out by its owner, so every replica
/// ends with the same bits, whatever the transport. With bf16 the partial sums travel rounded and are added in fp32;
/// the owner rounds its final segment too, so replicas stay identical.
/// </summary>
public sealed class RingCollective(int group, int rank, int size, IRingTransport transport, int chunkFloats = RingCollective.DefaultChunkFloats)
    : ICollective
{
    /// <summary>256 Ki floats: 1 MiB in fp32, under the 4 MiB frame the cluster configures.</summary>
    public const int DefaultChunkFloats = 256 * 1024;
    private long op;

    /// <summary>A ring whose chunks travel as messages: <paramref name="send"/> to a rank, taken from <paramref name="inbox"/>.</summary>
    public RingCollective(int group, int rank, int size, Action<int, RingChunk> send, ChunkInbox inbox, int chunkFloats = DefaultChunkFloats)
        : this(group, rank, size, new MessageRingTransport(group, (rank + 1) % size, send, inbox), chunkFloats)
    {
    }

    public int Rank { get; } = rank;
    public int Size { get; } = size;
    public int Group { get; } = group;
    public int ChunkFloats { get; } = chunkFloats;

    public void AllReduceSum(float[] data, int count, WirePrecision precision = WirePrecision.Float32)
    {
        if (Size == 1) return;
        long id = op++;
        int n = Size, r = Rank;
        int Seg(int k) => ((k % n) + n) % n;

        // Reduce-scatter: step s sends segment r-s, receives segment r-s-1 and adds it in.
        SendSegment(data, count, id, 0, Seg(r), precision);
        for (int s = 0; s < n - 1; s++)
        {
            var (start, length) = Segment(count, Seg(r - s - 1));
            for (int c = 0, at = start; at < start + length; c++, at += ChunkFloats)
            {
                var chunk = data.AsSpan(at, Math.Min(ChunkFloats, start + length - at));
                transport.Receive(id, s, c, at, chunk, accumulate: true, precision);
                if (s < n - 2) transport.Send(id, s + 1, c, at, chunk, precision);
            }
        }
        // This replica now holds segment r+1 summed over all; round it as it will travel, then all-gather.
        var (ownStart, ownLength) = Segment(count, Seg(r + 1));
        if (precision == WirePrecision.BFloat16) Bf16.RoundInPlace(data.AsSpan(ownStart, ownLength));
        SendSegment(data, count, id, n - 1, Seg(r + 1), precision);
        for (int t = 0; t < n - 1; t++)
        {
            var (start, length) = Segment(count, Seg(r - t));
            for (int c = 0, at = start; at < start + length; c++, at += ChunkFloats)
            {
                var chunk = data.AsSpan(at, Math.Min(ChunkFloats, start + length - at));
                transport.Receive(id, n - 1 + t, c, at, chunk, accumulate: false, precision);
                if (t < n - 2) transport.Send(id, n + t, c, at, chunk, precision);
            }
        }
    }

    private (int Start, int Length) Segment(int count, int k)
    {
        int start = (int)((long)count * k / Size), end = (int)((long)count * (k + 1) / Size);
        return (start, end - start);
    }

    private void SendSegment(float[] data, int count, long id, int step, int segment, WirePrecision precision)
    {
        var (start, length) = Segment(count, segment);
        for (int c = 0, at = start; at < start + length; c++, at += ChunkFloats)
            transport.Send(id, step, c, at, data.AsSpan(at, Math.Min(ChunkFloats, start + length - at)), precision);
    }
}

/// <summary>
/// Chunks as messages (<see cref="RingChunk"/>, over Akka.Remote in a cluster, or between threads): each send packs a
/// copy, each receive waits on the <see cref="ChunkInbox"/> by key.
/// </summary>
public sealed class MessageRingTransport(int group, int next, Action<int, RingChunk> send, ChunkInbox inbox) : IRingTransport
{
    public void Send(long op, int step, int index, int offset, ReadOnlySpan<float> values, WirePrecision precision)
    {
        if (precision == WirePrecision.BFloat16)
        {
            var half = new ushort[values.Length];
            Bf16.Encode(values, half);
            send(next, new RingChunk(group, op, step, index, offset, values.Length, null, half));
        }
        else send(next, new RingChunk(group, op, step, index, offset, values.Length, values.ToArray(), null));
    }

    public void Receive(long op, int step, int index, int offset, Span<float> target, bool accumulate, WirePrecision precision)
    {
        var chunk = inbox.Take(op, step, index);
        if (chunk.Offset != offset || chunk.Count != target.Length)
            throw new CollectiveAbortedException($"chunk ({op}, {step}, {index}) covers [{chunk.Offset}, +{chunk.Count}), expected [{offset}, +{target.Length})");
        if (chunk.Half is { } half)
        {
            if (accumulate) Bf16.AddTo(half, target);
            else Bf16.Decode(half, target);
        }
        else if (accumulate) Vectors.AddTo(chunk.Values!, target);
        else chunk.Values.AsSpan(0, chunk.Count).CopyTo(target);
    }
}

public static class Vectors
{
    public static void AddTo(ReadOnlySpan<float> source, Span<float> target)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int w = Vector<float>.Count;
            for (; i <= target.Length - w; i += w)
                (new Vector<float>(target[i..]) + new Vector<float>(source[i..])).CopyTo(target[i..]);
        }
        for (; i < target.Length; i++) target[i] += source[i];
    }
}

/// <summary>bfloat16 as the upper 16 bits of an fp32, rounded to nearest even (NaN stays NaN).</summary>
public static class Bf16
{
    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        bits += 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)(bits >> 16);
    }

    public static float ToSingle(ushort half) => BitConverter.UInt32BitsToSingle((uint)half << 16);

    /// <summary>Rounds each value to bf16 (nearest, ties to even; NaN stays NaN), <see cref="Vector{T}"/> lanes at a time.</summary>
    public static void Encode(ReadOnlySpan<float> source, Span<ushort> target)
    {
        if (target.Length < source.Length) throw new ArgumentException("the target is shorter than the source");
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int lanes = Vector<uint>.Count;
            var sourceBits = MemoryMarshal.Cast<float, uint>(source);
            for (; i + 2 * lanes <= source.Length; i += 2 * lanes)
            {
                var low = Round(new Vector<uint>(sourceBits[i..]));
                var high = Round(new Vector<uint>(sourceBits[(i + lanes)..]));
                Vector.Narrow(low, high).CopyTo(target[i..]);
            }
        }
        for (; i < source.Length; i++) target[i] = FromSingle(source[i]);
    }

    /// <summary><see cref="FromSingle"/> on every lane, the result in the low 16 bits.</summary>
    private static Vector<uint> Round(Vector<uint> bits)
    {
        var value = Vector.AsVectorSingle(bits);
        var nan = Vector.AsVectorUInt32(Vector.Equals(value, value)); // all ones where not NaN
        var rounded = (bits + new Vector<uint>(0x7FFFu) + ((bits >> 16) & Vector<uint>.One)) >> 16;
        var quiet = (bits >> 16) | new Vector<uint>(0x40u);
        return Vector.ConditionalSelect(nan, rounded, quiet);
    }

    public static void Decode(ReadOnlySpan<ushort> source, Span<float> target)
    {
        if (target.Length < source.Length) throw new ArgumentException("the target is shorter than the source");
        int i = 0, lanes = Vector<float>.Count;
        if (Vector.IsHardwareAccelerated)
            for (; i + 2 * lanes <= source.Length; i += 2 * lanes)
            {
                var (low, high) = Widen(source[i..]);
                low.CopyTo(target[i..]);
                high.CopyTo(target[(i + lanes)..]);
            }
        for (; i < source.Length; i++) target[i] = ToSingle(source[i]);
    }

    public static void AddTo(ReadOnlySpan<ushort> source, Span<float> target)
    {
        if (target.Length < source.Length) throw new ArgumentException("the target is shorter than the source");
        int i = 0, lanes = Vector<float>.Count;
        if (Vector.IsHardwareAccelerated)
            for (; i + 2 * lanes <= source.Length; i += 2 * lanes)
            {
                var (low, high) = Widen(source[i..]);
                (new Vector<float>(target[i..]) + low).CopyTo(target[i..]);
                (new Vector<float>(target[(i + lanes)..]) + high).CopyTo(target[(i + lanes)..]);
            }
        for (; i < source.Length; i++) target[i] += ToSingle(source[i]);
    }

    /// <summary><see cref="ToSingle"/> of the first two vectors' worth of <paramref name="source"/>: its low and high halves.</summary>
    private static (Vector<float> Low, Vector<float> High) Widen(ReadOnlySpan<ushort> source)
    {
        Vector.Widen(new Vector<ushort>(source), out var low, out var high);
        return (Vector.AsVectorSingle(low << 16), Vector.AsVectorSingle(high << 16));
    }

    public static void RoundInPlace(Span<float> values)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var bits = MemoryMarshal.Cast<float, uint>(values);
            for (; i + Vector<uint>.Count <= values.Length; i += Vector<uint>.Count)
                (Round(new Vector<uint>(bits[i..])) << 16).CopyTo(bits[i..]);
        }
        for (; i < values.Length; i++) values[i] = ToSingle(FromSingle(values[i]));
    }
}

/// <summary>
/// N replicas in one process, as threads: each send copies the chunk into the receiver's inbox, as a network would.
/// For tests and for checking the maths of a group without a cluster.
/// </summary>
public static class LocalRing
{
    public static RingCollective[] Create(int size, int chunkFloats = RingCollective.DefaultChunkFloats, TimeSpan? timeout = null)
    {
        var inboxes = Enumerable.Range(0, size).Select(_ => new ChunkInbox(timeout ?? TimeSpan.FromSeconds(60))).ToArray();
        return Enumerable.Range(0, size)
            .Select(r => new RingCollective(0, r, size, (to, chunk) => inboxes[to].Post(chunk with
            {
                Values = chunk.Values?.ToArray(), Half = chunk.Half?.ToArray(),
            }), inboxes[r], chunkFloats))
            .ToArray();
    }
}
