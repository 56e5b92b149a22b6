using System.Globalization;
using MetaMae.Data.Formats;

namespace MetaMae.Data.Readers;

/// <summary>Tabular and small multispectral sets from CSV: one token per feature (1-D patches of 1) or a tiny image.</summary>
public static class Tables
{
    private static float Parse(string s, string what)
    {
        if (!float.TryParse(s.Trim().Trim('"'), NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
            throw new FormatException($"{what} '{s}' is not a number");
        if (!float.IsFinite(v)) throw new FormatException($"{what} is {s}");
        return v;
    }

    /// <summary>
    /// HIGGS. Two layouts: the UCI file HIGGS.csv[.gz] (no header; label, 28 features) whose last 500k rows are the
    /// test set (UCI's own advice; for a smaller file, a seeded stratified 90/10 split), and DABS's particle_physics/higgs{Pretrain,Transfer}.csv
    /// (header; index, label, 28 features) with a seeded 90/10 split of the transfer file.
    /// </summary>
    public static IDataset Higgs(DatasetSpec spec, ReaderOptions o)
    {
        const string layout = "particle_physics/higgsPretrain.csv and higgsTransfer.csv (DABS), or HIGGS.csv[.gz] (UCI)";
        var dabs = Path.Combine(o.Root, "particle_physics", o.Split == Split.Pretrain ? "higgsPretrain.csv" : "higgsTransfer.csv");
        List<CsvRow> rows;
        string path;
        int first;
        if (File.Exists(dabs))
        {
            path = dabs;
            rows = CsvTable.Read(dabs, hasHeader: true).Rows;
            first = 1;
            if (o.Split != Split.Pretrain) rows = Layout.SplitShuffled(rows, o.Split, 0.9);
        }
        else
        {
            path = new[] { "HIGGS.csv.gz", "HIGGS.csv" }.Select(n => Path.Combine(o.Root, n)).FirstOrDefault(File.Exists)
                   ?? throw new DataLayoutException(dabs, layout);
            rows = CsvTable.Read(path, hasHeader: false).Rows;
            first = 0;
            if (rows.Count > 1_000_000) rows = o.Split == Split.Test ? rows[^500_000..] : rows[..^500_000]; // UCI's own advice
            else rows = Layout.SplitStratified(rows, r => r.Fields.Length > 0 ? r.Fields[0].Trim() : null, o.Split, 0.9); // no published split
        }
        return new ListDataset<CsvRow>(spec, rows, r => $"{path}:{r.Line}", (r, _) =>
        {
            if (r.Fields.Length < first + 29) throw new FormatException($"{r.Fields.Length} columns, expected {first + 29}");
            var label = Parse(r.Fields[first], "label");
            if (label is not (0 or 1)) throw new FormatException($"label {label} is not 0 or 1");
            var values = new float[28];
            for (int i = 0; i < 28; i++) values[i] = Parse(r.Fields[first + 1 + i], $"feature {i + 1}");
            return Sample.Dense(values, label);
        });
    }

    /// <summary>
    /// A labelled CSV of numeric features (a header row, one label column, the rest features), scaled by
    /// <paramref name="scale"/>, split 80/20 by a seeded stratified shuffle, or by contiguous row blocks when samples overlap.
    /// </summary>
    public static IDataset LabelledCsv(DatasetSpec spec, ReaderOptions o, string file, string labelColumn, float scale,
        Func<float[], float[]>? arrange = null, bool splitByBlocks = false)
    {
        var path = Layout.File(Path.Combine(o.Root, file), $"{file}: CSV with a header row and a '{labelColumn}' column");
        var table = CsvTable.Read(path);
        int labelAt = table.Column(labelColumn);
        var map = Layout.LabelMap(table.Rows.Where(r => r.Fields.Length > labelAt).Select(r => r.Fields[labelAt].Trim()));
        var rows = splitByBlocks ? BlockSplit(table.Rows, o.Split)
            : Layout.SplitStratified(table.Rows, r => r.Fields.Length > labelAt ? r.Fields[labelAt].Trim() : null, o.Split, 0.8);
        int features = table.Header.Length - 1;
        return new ListDataset<CsvRow>(spec, rows, r => $"{path}:{r.Line}", (r, _) =>
        {
            if (r.Fields.Length != table.Header.Length) throw new FormatException($"{r.Fields.Length} fields, the header has {table.Header.Length}");
            var values = new float[features];
            for (int i = 0, k = 0; i < r.Fields.Length; i++)
                if (i != labelAt) values[k++] = Parse(r.Fields[i], table.Header[i]) * scale;
            return Sample.Dense(arrange is null ? values : arrange(values), map[r.Fields[labelAt].Trim()]);
        });
    }

    /// <summary>Statlog Landsat: 36 values pixel by pixel (4 bands each) to (4, 3, 3), band-major; split by row blocks.</summary>
    public static IDataset Landsat(DatasetSpec spec, ReaderOptions o) =>
        LabelledCsv(spec, o, "landsat_statlog.csv", "classes", 1f / 255, PixelMajorToChannels, splitByBlocks: true);

    public static float[] PixelMajorToChannels(float[] v)
    {
        var result = new float[36];
        for (int pixel = 0; pixel < 9; pixel++)
            for (int band = 0; band < 4; band++) result[band * 9 + pixel] = v[pixel * 4 + band];
        return result;
    }

    /// <summary>Neighbouring rows share pixels: test = every fifth block of 100 rows, train the rest.</summary>
    private static List<CsvRow> BlockSplit(List<CsvRow> rows, Split split) =>
        rows.Where((_, i) => (i / 100 % 5 == 4) == (split == Split.Test)).ToList();
}
