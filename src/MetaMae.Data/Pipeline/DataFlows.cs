using Akka;
using Akka.Streams;
using Akka.Streams.Dsl;
using MetaMae.Protocol;

namespace MetaMae.Data.Pipeline;

/// <summary>How a stream reads a data set.</summary>
public sealed record PipelineSettings
{
    public required int BatchSize { get; init; }
    public long Seed { get; init; }
    /// <summary>Records decoded at once; default one per core.</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;
    /// <summary>This stream reads positions p with p mod ShardCount == ShardIndex.</summary>
    public int ShardIndex { get; init; }
    public int ShardCount { get; init; } = 1;
    /// <summary>Shuffle each epoch (a seeded permutation per epoch); false reads in listing order.</summary>
    public bool Shuffle { get; init; } = true;
    /// <summary>Stop after this many epochs; null streams forever.</summary>
    public long? Epochs { get; init; }
    /// <summary>Ready batches held ahead of the consumer.</summary>
    public int BufferBatches { get; init; } = 2;
    /// <summary>The run fails once more than this fraction of records read were bad (after <see cref="MinRecordsForBadCheck"/>).</summary>
    public double MaxBadFraction { get; init; } = 0.05;
    public int MinRecordsForBadCheck { get; init; } = 100;
    /// <summary>Values beyond +-this are taken for corruption: the record is counted as bad (see <see cref="ValueBounds"/>).</summary>
    public double MaxAbsValue { get; init; } = ValueBounds.DefaultMaxAbs;
    /// <summary>Individual bad records logged before only counting them.</summary>
    public int BadRecordsLogged { get; init; } = 20;

    public void Validate()
    {
        if (BatchSize < 1) throw new ArgumentException($"batch size must be at least 1, got {BatchSize}");
        if (Parallelism < 1) throw new ArgumentException($"parallelism must be at least 1, got {Parallelism}");
        if (ShardCount < 1 || ShardIndex < 0 || ShardIndex >= ShardCount)
            throw new ArgumentException($"shard {ShardIndex} of {ShardCount} is not valid");
        if (!(MaxAbsValue > 0)) throw new ArgumentException($"max abs value must be positive, got {MaxAbsValue}");
        if (MaxBadFraction is < 0 or > 1) throw new ArgumentException($"max bad fraction must be in [0, 1], got {MaxBadFraction}");
    }
}

/// <summary>A record scheduled for reading: its place in the stream's order and its index in the data set.</summary>
public readonly record struct OrderedRecord(StreamPosition Position, int Index);

/// <summary>A record after decoding: the sample, or why it could not be read.</summary>
public readonly record struct Decoded(OrderedRecord Record, Sample? Sample, BadRecordException? Error);

/// <summary>Raised when bad records exceed the configured fraction.</summary>
public sealed class TooManyBadRecordsException(string dataset, long bad, long read, double limit)
    : Exception($"{dataset}: {bad} of {read} records ({100.0 * bad / read:F1}%) could not be read, over the configured limit of {100 * limit:F1}% " +
                "(max_bad_fraction); see the log for which records and why");

/// <summary>
/// Reusable Akka.Streams pieces that turn a data set into batches: positions (a pure function of seed, epoch and
/// offset) -> shard -> parallel decode (order kept) -> skip bad records -> collate into plain arrays -> bounded buffer.
/// Back-pressure runs end to end: nothing is decoded faster than batches are taken.
/// </summary>
public static class DataFlows
{
    /// <summary>The permutation of epoch <paramref name="epoch"/>: identical for the same (seed, epoch, count).</summary>
    public static int[] EpochOrder(int count, long seed, long epoch, bool shuffle) =>
        shuffle ? Readers.Layout.Shuffled(count, unchecked((long)DecodeContext.Mix(seed, epoch, 0x0dde))) : Enumerable.Range(0, count).ToArray();

    /// <summary>(epoch, offset) -> record index, from <paramref name="start"/> onwards.</summary>
    public static IEnumerable<OrderedRecord> Order(int count, PipelineSettings settings, StreamPosition start)
    {
        if (count == 0) yield break;
        for (long epoch = start.Epoch; settings.Epochs is not { } n || epoch < n; epoch++)
        {
            var order = EpochOrder(count, settings.Seed, epoch, settings.Shuffle);
            for (long offset = epoch == start.Epoch ? start.Offset : 0; offset < count; offset++)
                yield return new OrderedRecord(new StreamPosition(epoch, offset), order[offset]);
        }
    }

    public static Source<OrderedRecord, NotUsed> Positions(int count, PipelineSettings settings, StreamPosition start) =>
        Source.FromEnumerator(() => Order(count, settings, start).GetEnumerator()).Named("positions");

    public static Flow<OrderedRecord, OrderedRecord, NotUsed> Shard(int index, int count) =>
        Flow.Create<OrderedRecord>().Where(r => count == 1 || r.Position.Offset % count == index).Named($"shard-{index}-of-{count}");

    /// <summary>Decodes records on the thread pool, <paramref name="parallelism"/> at a time, emitting in input order.</summary>
    public static Flow<OrderedRecord, Decoded, NotUsed> Decode(IDataset dataset, long seed, bool training, int parallelism, DataMetrics metrics,
        double maxAbsValue = ValueBounds.DefaultMaxAbs) =>
        Flow.Create<OrderedRecord>().SelectAsync(parallelism, r => Task.Run(() =>
        {
            metrics.Started();
            try
            {
                var sample = ValueBounds.Check(dataset.Read(r.Index, new DecodeContext(seed, r.Position.Epoch, r.Index, training)),
                    maxAbsValue, dataset.Describe(r.Index));
                metrics.Decoded(sample.Bytes);
                return new Decoded(r, sample, null);
            }
            catch (BadRecordException e)
            {
                return new Decoded(r, null, e);
            }
        })).Named("decode");

    /// <summary>Counts, logs and drops bad records; fails the stream once they exceed the configured fraction.</summary>
    public static Flow<Decoded, Decoded, NotUsed> SkipBad(string dataset, PipelineSettings settings, DataMetrics metrics, Action<string>? log) =>
        Flow.Create<Decoded>().Where(d =>
        {
            if (d.Error is null) return true;
            var bad = metrics.Bad();
            if (bad <= settings.BadRecordsLogged)
                log?.Invoke($"skipped bad record {d.Error.Where}: {d.Error.Reason}");
            else if (bad % 1000 == 0)
                log?.Invoke($"{bad} bad records skipped so far in {dataset}");
            var snap = metrics.Snapshot();
            if (snap.RecordsRead >= settings.MinRecordsForBadCheck && snap.BadFraction > settings.MaxBadFraction)
                throw new TooManyBadRecordsException(dataset, snap.BadRecords, snap.RecordsRead, settings.MaxBadFraction);
            return false;
        }).Named("skip-bad");

    /// <summary>Groups samples into batches of plain arrays; the last partial batch of a finite stream is kept.</summary>
    public static Flow<Decoded, Batch, NotUsed> Collate(DatasetSpec spec, int batchSize, long count, DataMetrics metrics)
    {
        long sequence = 0;
        return Flow.Create<Decoded>().Grouped(batchSize).Select(group =>
        {
            FailPoints.Hit("data.batch", Interlocked.Read(ref sequence));
            var batch = CollateGroup(spec, group.ToList(), count, Interlocked.Increment(ref sequence) - 1);
            metrics.Batched(batch.Size);
            return batch;
        }).Named("collate");
    }

    public static Batch CollateGroup(DatasetSpec spec, IReadOnlyList<Decoded> group, long count, long sequence)
    {
        int n = group.Count, labelsPer = spec.LabelsPerSample;
        var first = group[0].Sample!;
        float[]? values = first.Values is null ? null : new float[(long)n * first.Values.Length];
        long[]? ids = first.Ids is null ? null : new long[(long)n * first.Ids.Length];
        var labels = new float[n * labelsPer];
        for (int i = 0; i < n; i++)
        {
            var s = group[i].Sample!;
            if (values is not null) s.Values!.CopyTo(values, (long)i * s.Values!.Length);
            if (ids is not null) s.Ids!.CopyTo(ids, (long)i * s.Ids!.Length);
            s.Labels.CopyTo(labels, i * labelsPer);
        }
        var last = group[^1].Record.Position;
        var end = last.Offset + 1 >= count ? new StreamPosition(last.Epoch + 1, 0) : last with { Offset = last.Offset + 1 };
        return new Batch(n, spec.Shape, values, ids, labels, labelsPer, end, sequence);
    }

    /// <summary>The whole pipeline for one data set, starting at <paramref name="start"/> (for exact resume).</summary>
    public static Source<Batch, NotUsed> Batches(IDataset dataset, PipelineSettings settings, StreamPosition start, DataMetrics metrics,
        Action<string>? log = null, bool training = true)
    {
        settings.Validate();
        if (dataset.Count == 0) throw new InvalidDataException($"data set {dataset.Spec.Name} has no records for this split");
        return Positions(dataset.Count, settings, start)
            .Via(Shard(settings.ShardIndex, settings.ShardCount))
            .Via(Decode(dataset, settings.Seed, training, settings.Parallelism, metrics, settings.MaxAbsValue))
            .Via(SkipBad(dataset.Spec.Name, settings, metrics, log))
            .Via(Collate(dataset.Spec, settings.BatchSize, dataset.Count, metrics))
            .Buffer(settings.BufferBatches, OverflowStrategy.Backpressure)
            .Named($"batches-{dataset.Spec.Name}");
    }
}
