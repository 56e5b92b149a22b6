namespace MetaMae.Data;

/// <summary>Which part of a data set: pretraining, or the transfer set's train / test split.</summary>
public enum Split { Pretrain, Train, Test }

/// <summary>
/// One decoded example as plain arrays. Exactly one of <see cref="Values"/> (floats in the spec's sample shape) and
/// <see cref="Ids"/> (token ids) is set. <see cref="Labels"/> has one value per sample, or one per token for
/// per-token tasks; unlabelled data carries -1.
/// </summary>
public sealed record Sample(float[]? Values, long[]? Ids, float[] Labels)
{
    public static Sample Dense(float[] values, float label) => new(values, null, [label]);
    public static Sample Tokens(long[] ids, float label) => new(null, ids, [label]);
    public long Bytes => (Values?.LongLength ?? 0) * 4 + (Ids?.LongLength ?? 0) * 8;
}

/// <summary>A record that cannot be read: counted, logged with where and why, and skipped by the pipeline.</summary>
public sealed class BadRecordException(string where, string reason, Exception? inner = null)
    : Exception($"{where}: {reason}", inner)
{
    public string Where { get; } = where;
    public string Reason { get; } = reason;
}

/// <summary>A missing file or directory, named with the layout the reader expects there.</summary>
public sealed class DataLayoutException(string path, string expected)
    : Exception($"{path} not found. Expected layout: {expected}")
{
    public string Path { get; } = path;
}

/// <summary>
/// Deterministic randomness for stochastic decoding (random crops, random windows): a pure function of
/// (seed, epoch, position), so a resumed run decodes exactly as the original did, whatever the parallelism.
/// </summary>
public readonly record struct DecodeContext(long Seed, long Epoch, long Position, bool Training)
{
    public Random Random() => new(unchecked((int)Mix(Seed, Epoch, Position)));

    public static ulong Mix(long a, long b, long c)
    {
        // splitmix64 over the three values: well spread, fast, reproducible on every platform.
        ulong z = unchecked((ulong)a * 0x9E3779B97F4A7C15UL ^ (ulong)b * 0xBF58476D1CE4E5B9UL ^ (ulong)c * 0x94D049BB133111EBUL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }
}

/// <summary>
/// A data set split, listed up front (cheap: names, offsets, lines) and decoded record by record (the expensive part,
/// run in parallel by the pipeline). <see cref="Read"/> must be thread-safe and throw <see cref="BadRecordException"/>
/// for a record it cannot decode.
/// </summary>
public interface IDataset
{
    DatasetSpec Spec { get; }
    int Count { get; }
    /// <summary>Where record <paramref name="index"/> lives, for messages: "file:line" or "file#index".</summary>
    string Describe(int index);
    Sample Read(int index, DecodeContext context);
    /// <summary>What opening the data set skipped and its user should hear of (links out of its folder, files reached twice).</summary>
    IReadOnlyList<string> Notes => [];
}

/// <summary>An in-memory list of records of type <typeparamref name="T"/> with a decode function.</summary>
public sealed class ListDataset<T>(DatasetSpec spec, IReadOnlyList<T> records, Func<T, string> describe,
    Func<T, DecodeContext, Sample> decode) : IDataset
{
    public DatasetSpec Spec { get; } = spec;
    public IReadOnlyList<T> Records { get; } = records;
    public IReadOnlyList<string> Notes { get; init; } = [];
    public int Count => Records.Count;
    public string Describe(int index) => describe(Records[index]);

    public Sample Read(int index, DecodeContext context)
    {
        var record = Records[index];
        if (record is Formats.IRecordProblem { Problem: { } problem }) throw new BadRecordException(describe(record), problem);
        try
        {
            var sample = decode(record, context);
            Spec.CheckShape(sample, describe(record));
            return sample;
        }
        catch (BadRecordException)
        {
            throw;
        }
        catch (Exception e)
        {
            // Whatever a decoder throws on one record (including an allocation a lying header asks for) is that
            // record's problem: counted and skipped by the pipeline, named with file and record.
            var reason = e is FormatException or InvalidDataException or IOException or UnauthorizedAccessException ? e.Message : $"{e.GetType().Name}: {e.Message}";
            throw new BadRecordException(describe(record), reason, e);
        }
    }
}
