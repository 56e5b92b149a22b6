using System.Globalization;

namespace MetaMae.Data.Readers;

/// <summary>
/// PAMAP2 (Protocol/subject10X.dat: 54 space-separated columns, NaN for missing values). Columns 3..54 (heart rate and
/// the three IMUs) are linearly interpolated over missing values, as DABS does with pandas; values before the first
/// reading take the first reading. A sample is a (52, 320) window of one activity: train subjects 101-104 and 107-109,
/// test 105-106. DABS draws windows at random on every read, so evaluation differs run to run; here a window is a pure
/// function of (seed, epoch, position): pretraining sees fresh windows each epoch, evaluation the same windows every run.
/// </summary>
public static class Pamap2
{
    public static readonly int[] ActivityIds = [1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24];
    public const int Window = 320, Channels = 52, Columns = 54;

    private sealed record Segment(string File, int Activity, float[][] Rows); // rows: (time, 52)

    public static IDataset Read(DatasetSpec spec, ReaderOptions o, int? windowsPerEpoch = null)
    {
        const string layout = "Protocol/subject101.dat ... subject109.dat (PAMAP2 Protocol folder, 54 space-separated columns)";
        var dir = Layout.Directory(Path.Combine(o.Root, "Protocol"), layout);
        var subjects = o.Training ? new[] { 1, 2, 3, 4, 7, 8, 9 } : [5, 6];
        var segments = new List<Segment>();
        foreach (var s in subjects)
        {
            var path = Path.Combine(dir, $"subject10{s}.dat");
            if (!File.Exists(path)) throw new DataLayoutException(path, layout);
            segments.AddRange(ReadSubject(path));
        }
        if (segments.Count == 0) throw new FormatException($"{dir}: no activity has more than {Window} readings");
        int count = windowsPerEpoch ?? (o.Training ? 50_000 : 10_000);
        return new ListDataset<int>(spec, Enumerable.Range(0, count).ToList(), i => $"{dir} window {i}", (i, ctx) =>
        {
            // Evaluation windows ignore the epoch: the same windows every pass and every run with this seed.
            var rng = new Random(unchecked((int)DecodeContext.Mix(ctx.Seed, o.Split == Split.Pretrain ? ctx.Epoch : -1, i)));
            var seg = segments[rng.Next(segments.Count)];
            int start = rng.Next(seg.Rows.Length - Window);
            var values = new float[Channels * Window];
            for (int t = 0; t < Window; t++)
                for (int c = 0; c < Channels; c++) values[c * Window + t] = seg.Rows[start + t][c];
            return Sample.Dense(values, Array.IndexOf(ActivityIds, seg.Activity));
        });
    }

    private static IEnumerable<Segment> ReadSubject(string path)
    {
        var rows = new List<float[]>();
        var activities = new List<int>();
        int lineNo = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNo++;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 0) continue;
            if (parts.Length != Columns) throw new FormatException($"{path}:{lineNo}: {parts.Length} columns, expected {Columns}");
            var values = new float[Channels];
            for (int c = 0; c < Channels; c++)
                values[c] = float.Parse(parts[c + 2], NumberStyles.Float, CultureInfo.InvariantCulture); // "NaN" parses to NaN
            rows.Add(values);
            activities.Add((int)float.Parse(parts[1], CultureInfo.InvariantCulture));
        }
        Interpolate(rows);
        foreach (var activity in ActivityIds)
        {
            var selected = rows.Where((_, i) => activities[i] == activity).ToArray();
            if (selected.Length > Window) yield return new Segment(path, activity, selected);
        }
    }

    /// <summary>Per column: linear between known values, constant before the first and after the last.</summary>
    public static void Interpolate(List<float[]> rows)
    {
        if (rows.Count == 0) return;
        int channels = rows[0].Length;
        for (int c = 0; c < channels; c++)
        {
            int last = -1;
            for (int t = 0; t < rows.Count; t++)
            {
                if (float.IsNaN(rows[t][c])) continue;
                if (last == -1) for (int k = 0; k < t; k++) rows[k][c] = rows[t][c];
                else for (int k = last + 1; k < t; k++) rows[k][c] = rows[last][c] + (rows[t][c] - rows[last][c]) * (k - last) / (t - last);
                last = t;
            }
            if (last == -1) for (int t = 0; t < rows.Count; t++) rows[t][c] = 0; // a sensor that never reported
            else for (int k = last + 1; k < rows.Count; k++) rows[k][c] = rows[last][c];
        }
    }
}
