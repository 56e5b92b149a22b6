namespace MetaMae.Data.Readers;

/// <summary>
/// Where a reader looks and which split it lists. There is deliberately no seed: a split is a function of the data set
/// (its published split, or <see cref="Layout.SplitSeed"/>), never of a run, so a run's seed cannot move probe-test
/// records into its pretraining data.
/// </summary>
public sealed record ReaderOptions(string Root, Split Split)
{
    public bool Training => Split != Split.Test;
}

/// <summary>Helpers shared by readers: layout checks, deterministic splits, label maps.</summary>
public static class Layout
{
    /// <summary>The one seed of every shuffled split where a data set publishes none (as the original's fixed 42).</summary>
    public const long SplitSeed = 42;

    public static string File(string path, string expected) =>
        System.IO.File.Exists(path) ? path : throw new DataLayoutException(path, expected);

    public static string Directory(string path, string expected) =>
        System.IO.Directory.Exists(path) ? path : throw new DataLayoutException(path, expected);

    /// <summary>
    /// A reproducible shuffle (seeded Fisher-Yates on our own generator). The original loaders shuffle with NumPy or
    /// pandas generators; their exact permutations are not reproduced, only the split fractions and the fixed seed.
    /// </summary>
    public static int[] Shuffled(int count, long seed)
    {
        var order = Enumerable.Range(0, count).ToArray();
        var rng = new Random(unchecked((int)DecodeContext.Mix(seed, 0x5EED, count)));
        for (int i = count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>The train or test part of <paramref name="items"/> after a seeded shuffle: the first floor(f n) are train.</summary>
    public static List<T> SplitShuffled<T>(IReadOnlyList<T> items, Split split, double trainFraction, long seed = 42)
    {
        var order = Shuffled(items.Count, seed);
        int cut = (int)(trainFraction * items.Count);
        var chosen = split == Split.Test ? order[cut..] : order[..cut];
        return chosen.Select(i => items[i]).ToList();
    }

    /// <summary>Per-class 80/20 (or other) split, as DABS does for Flowers and GTSRB.</summary>
    public static List<T> SplitPerClass<T>(IEnumerable<T> items, Func<T, int> label, Split split, double trainFraction, long seed = 42) =>
        items.GroupBy(label).OrderBy(g => g.Key)
            .SelectMany(g => SplitShuffled(g.ToList(), split, trainFraction, seed + g.Key)).ToList();

    /// <summary>
    /// A seeded, stratified split where a data set publishes none: within each label (a row whose label cannot be read
    /// is its own group, so it still lands in one split and is reported there), the first floor(f n) of a seeded shuffle
    /// are train; kept in file order. A file sorted by class still gives every class to both splits.
    /// </summary>
    public static List<T> SplitStratified<T>(IReadOnlyList<T> items, Func<T, string?> label, Split split, double trainFraction, long seed = SplitSeed)
    {
        var chosen = Enumerable.Range(0, items.Count).GroupBy(i => label(items[i]) ?? "\0unreadable").OrderBy(g => g.Key, StringComparer.Ordinal)
            .SelectMany(g => SplitShuffled(g.ToList(), split, trainFraction, seed + LabelSeed(g.Key))).Order();
        return chosen.Select(i => items[i]).ToList();
    }

    /// <summary>A label's share of a split's seed: a hash that is the same in every process.</summary>
    private static long LabelSeed(string label) => unchecked((long)DecodeContext.Mix(Sequences.Fnv(label), 0, 0) & 0x7FFFFFFF);

    /// <summary>Sorted distinct names mapped to 0..K-1.</summary>
    public static Dictionary<string, int> LabelMap(IEnumerable<string> names) =>
        names.Distinct().Order(StringComparer.Ordinal).Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
}
