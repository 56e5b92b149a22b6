using System.Diagnostics;

namespace MetaMae.Data.Pipeline;

/// <summary>A moment's view of a pipeline: throughput, bad records, and how full its queues are.</summary>
public sealed record DataMetricsSnapshot(
    long RecordsRead, long Samples, long Bytes, long BadRecords, long Batches, long QueuedSamples, double Seconds)
{
    public double SamplesPerSecond => Seconds > 0 ? Samples / Seconds : 0;
    public double BytesPerSecond => Seconds > 0 ? Bytes / Seconds : 0;
    public double BadFraction => RecordsRead > 0 ? (double)BadRecords / RecordsRead : 0;
}

/// <summary>Thread-safe counters the stages update; read with <see cref="Snapshot"/>.</summary>
public sealed class DataMetrics
{
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private long started, samples, bytes, bad, batches, emitted;

    internal void Started() => Interlocked.Increment(ref started);
    internal void Decoded(long sampleBytes)
    {
        Interlocked.Increment(ref samples);
        Interlocked.Add(ref bytes, sampleBytes);
    }
    internal long Bad() => Interlocked.Increment(ref bad);
    internal void Batched(int size)
    {
        Interlocked.Increment(ref batches);
        Interlocked.Add(ref emitted, size);
    }

    /// <summary>Records whose decoding has started (a bound on memory: back-pressure keeps it near what was consumed).</summary>
    public long RecordsStarted => Interlocked.Read(ref started);

    public DataMetricsSnapshot Snapshot()
    {
        long s = Interlocked.Read(ref samples), b = Interlocked.Read(ref bad);
        return new DataMetricsSnapshot(s + b, s, Interlocked.Read(ref bytes), b, Interlocked.Read(ref batches),
            Interlocked.Read(ref started) - Interlocked.Read(ref emitted) - b, clock.Elapsed.TotalSeconds);
    }
}
