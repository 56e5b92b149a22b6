using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace MetaMae.Protocol;

/// <summary>What a frame of a batch feed holds.</summary>
public enum FrameKind : byte
{
    Batch = 1,
    /// <summary>The feed is over: the data node's stream completed.</summary>
    End = 2,
    /// <summary>The data node's stream failed; a UTF-8 reason follows.</summary>
    Error = 3,
}

/// <summary>
/// Batches on a byte stream (the batch plane between a data node and a learner): a fixed header, the sample shape,
/// then the arrays as raw little-endian bytes written straight from them and read straight into new ones, with no
/// serializer and no copy in between. A header's claims are checked before anything is allocated: at most
/// <see cref="MaxRank"/> dimensions, lengths that are not negative, and arrays that together fit
/// <c>maxFrameBytes</c> (computed without overflow), so a hostile or corrupt peer costs an error, not memory.
/// </summary>
public static class BatchFrames
{
    public const uint Magic = 0x54424D4D; // "MMBT"
    public const int MaxRank = 8;
    /// <summary>The default bound of one frame's arrays: 1 GiB (a DABS speech batch of 64 is 12.8 MB).</summary>
    public const long DefaultMaxFrameBytes = 1L << 30;
    private const int FixedBytes = 4 + 1 + 4 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8;
    private const int MaxReasonBytes = 64 << 10;

    /// <summary>Writes <paramref name="batch"/>: one header write, then each array from its own memory.</summary>
    public static void WriteBatch(Stream to, Batch batch)
    {
        var header = new byte[FixedBytes + 4 * MaxRank];
        if (batch.SampleShape.Length > MaxRank) throw new ArgumentException($"a batch sample has {batch.SampleShape.Length} dimensions; frames carry at most {MaxRank}");
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        header[4] = (byte)FrameKind.Batch;
        int at = 5;
        void Int(int v) { BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(at), v); at += 4; }
        void Long(long v) { BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(at), v); at += 8; }
        Int(batch.Size);
        Int(batch.SampleShape.Length);
        Int(batch.LabelsPerSample);
        Long(batch.End.Epoch);
        Long(batch.End.Offset);
        Long(batch.Sequence);
        Long(batch.Values?.LongLength ?? -1);
        Long(batch.Ids?.LongLength ?? -1);
        Long(batch.Labels.LongLength);
        foreach (var d in batch.SampleShape) Int(d);
        to.Write(header, 0, at);
        if (batch.Values is { } values) to.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        if (batch.Ids is { } ids) to.Write(MemoryMarshal.AsBytes(ids.AsSpan()));
        to.Write(MemoryMarshal.AsBytes(batch.Labels.AsSpan()));
    }

    /// <summary>The end of the feed.</summary>
    public static void WriteEnd(Stream to)
    {
        Span<byte> frame = stackalloc byte[5];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, Magic);
        frame[4] = (byte)FrameKind.End;
        to.Write(frame);
    }

    /// <summary>The feed failed for <paramref name="reason"/> (cut to 64 KiB).</summary>
    public static void WriteError(Stream to, string reason)
    {
        var text = Encoding.UTF8.GetBytes(reason);
        int length = Math.Min(text.Length, MaxReasonBytes);
        var frame = new byte[9 + length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, Magic);
        frame[4] = (byte)FrameKind.Error;
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(5), length);
        text.AsSpan(0, length).CopyTo(frame.AsSpan(9));
        to.Write(frame);
    }

    /// <summary>
    /// Reads one frame: a batch, or null at the end of the feed. An error frame throws <see cref="IOException"/> with
    /// the data node's reason; a frame that breaks the format throws <see cref="InvalidDataException"/> saying what,
    /// naming <paramref name="source"/>.
    /// </summary>
    public static Batch? Read(Stream from, string source, long maxFrameBytes = DefaultMaxFrameBytes)
    {
        Span<byte> start = stackalloc byte[5];
        from.ReadExactly(start);
        if (BinaryPrimitives.ReadUInt32LittleEndian(start) != Magic)
            throw new InvalidDataException($"{source}: not a batch frame (magic {BinaryPrimitives.ReadUInt32LittleEndian(start):x8})");
        switch ((FrameKind)start[4])
        {
            case FrameKind.End:
                return null;
            case FrameKind.Error:
            {
                Span<byte> length = stackalloc byte[4];
                from.ReadExactly(length);
                int n = BinaryPrimitives.ReadInt32LittleEndian(length);
                if (n is < 0 or > MaxReasonBytes) throw new InvalidDataException($"{source}: an error frame claims {n} bytes of reason (at most {MaxReasonBytes})");
                var text = new byte[n];
                from.ReadExactly(text);
                throw new IOException($"{source}: {Encoding.UTF8.GetString(text)}");
            }
            case FrameKind.Batch:
                break;
            default:
                throw new InvalidDataException($"{source}: unknown frame kind {start[4]}");
        }

        var header = new byte[FixedBytes - 5];
        from.ReadExactly(header);
        int at = 0;
        int Int() { int v = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(at)); at += 4; return v; }
        long Long() { long v = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(at)); at += 8; return v; }
        int size = Int(), rank = Int(), labelsPer = Int();
        var end = new StreamPosition(Long(), Long());
        long sequence = Long(), valueCount = Long(), idCount = Long(), labelCount = Long();
        if (size < 0 || rank is < 0 or > MaxRank || labelsPer < 0)
            throw new InvalidDataException($"{source}: batch {sequence} has size {size}, {rank} dimensions, {labelsPer} labels per sample (at most {MaxRank} dimensions, none negative)");
        if (valueCount < -1 || idCount < -1 || labelCount < 0 || (valueCount < 0) == (idCount < 0))
            throw new InvalidDataException($"{source}: batch {sequence} claims {valueCount} values, {idCount} ids, {labelCount} labels (exactly one of values and ids, none negative)");
        // Each count is below 2^63; bound each before the sum so that nothing overflows.
        long limit = maxFrameBytes;
        if (valueCount > limit / 4 || idCount > limit / 8 || labelCount > limit / 4
            || Math.Max(0, valueCount) * 4 + Math.Max(0, idCount) * 8 + labelCount * 4 > limit
            || Math.Max(valueCount, Math.Max(idCount, labelCount)) > Array.MaxLength)
            throw new InvalidDataException(
                $"{source}: batch {sequence} claims {valueCount} values, {idCount} ids and {labelCount} labels, more than the frame limit of {limit:N0} bytes");
        Span<byte> dims = stackalloc byte[4 * rank];
        from.ReadExactly(dims);
        var shape = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            shape[i] = BinaryPrimitives.ReadInt32LittleEndian(dims[(4 * i)..]);
            if (shape[i] < 0) throw new InvalidDataException($"{source}: batch {sequence} has a negative dimension {shape[i]}");
        }
        var values = valueCount < 0 ? null : ReadArray<float>(from, valueCount);
        var ids = idCount < 0 ? null : ReadArray<long>(from, idCount);
        var labels = ReadArray<float>(from, labelCount);
        return new Batch(size, shape, values, ids, labels, labelsPer, end, sequence);
    }

    private static T[] ReadArray<T>(Stream from, long count) where T : unmanaged
    {
        var array = GC.AllocateUninitializedArray<T>((int)count);
        from.ReadExactly(MemoryMarshal.AsBytes(array.AsSpan()));
        return array;
    }
}
