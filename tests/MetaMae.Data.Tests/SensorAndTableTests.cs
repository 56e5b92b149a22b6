using System.Globalization;
using System.Text;
using MetaMae.Data.Readers;

namespace MetaMae.Data.Tests;

public class SensorAndTableTests : DataFilesTest
{
    private static Sample Read(IDataset d, int i, long epoch = 0) => d.Read(i, new DecodeContext(3, epoch, i, false));

    private void Subject(int id, params (int Activity, int Rows)[] parts)
    {
        var sb = new StringBuilder();
        double t = 0;
        foreach (var (activity, rows) in parts)
            for (int r = 0; r < rows; r++, t += 0.01)
            {
                var cols = new List<string> { t.ToString("F2", CultureInfo.InvariantCulture), activity.ToString() };
                for (int c = 0; c < 52; c++)
                    cols.Add(c == 0 && r % 10 != 0 ? "NaN" : (activity * 100 + c + r * 0.001).ToString(CultureInfo.InvariantCulture));
                sb.AppendLine(string.Join(' ', cols));
            }
        Write($"Protocol/subject10{id}.dat", sb.ToString());
    }

    [Fact]
    public void Pamap2_windows_are_one_activity_interpolated_and_deterministic_for_evaluation()
    {
        foreach (var s in new[] { 1, 2, 3, 4, 7, 8, 9 }) Subject(s, (1, 400), (0, 50), (24, 500));
        Subject(5, (4, 400));
        Subject(6, (4, 330), (12, 200)); // activity 12 too short for a window
        var train = Pamap2.Read(DatasetCatalog.Get("pamap2").Spec, new ReaderOptions(Root, Split.Pretrain), windowsPerEpoch: 20);
        var s0 = Read(train, 0);
        Assert.Equal(52 * 320, s0.Values!.Length);
        Assert.Contains(s0.Labels[0], new[] { 0f, 11f }); // activities 1 and 24
        Assert.All(s0.Values, v => Assert.False(float.IsNaN(v)));
        // Heart rate (channel 0) is linearly interpolated between readings every 10 rows.
        float activity = s0.Labels[0] == 0 ? 1 : 24;
        Assert.InRange(s0.Values[0], activity * 100, activity * 100 + 1);
        Assert.NotEqual(Read(train, 0, 0).Values, Read(train, 0, 1).Values); // pretraining: fresh windows per epoch

        var test = Pamap2.Read(DatasetCatalog.Get("pamap2").Spec, new ReaderOptions(Root, Split.Test), windowsPerEpoch: 10);
        var again = Pamap2.Read(DatasetCatalog.Get("pamap2").Spec, new ReaderOptions(Root, Split.Test), windowsPerEpoch: 10);
        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(Array.IndexOf(Pamap2.ActivityIds, 4), (int)Read(test, i).Labels[0]);
            Assert.Equal(Read(test, i, epoch: 0).Values, Read(again, i, epoch: 5).Values); // same windows every run and pass
        }
    }

    [Fact]
    public void Interpolation_fills_edges_with_the_nearest_reading()
    {
        var rows = new List<float[]> { new[] { float.NaN }, new[] { 2f }, new[] { float.NaN }, new[] { 4f }, new[] { float.NaN } };
        Pamap2.Interpolate(rows);
        Assert.Equal(new[] { 2f, 2f, 3f, 4f, 4f }, rows.Select(r => r[0]).ToArray());
    }

    [Fact]
    public void Pamap2_wrong_column_count_names_file_and_line()
    {
        foreach (var s in new[] { 1, 2, 3, 4, 7, 8, 9 }) Subject(s, (1, 400));
        Write("Protocol/subject102.dat", "0.00 1 2 3\n");
        var e = Assert.Throws<FormatException>(() => Pamap2.Read(DatasetCatalog.Get("pamap2").Spec, new ReaderOptions(Root, Split.Train)));
        Assert.Contains("subject102.dat:1", e.Message);
    }

    [Fact]
    public void Higgs_reads_the_uci_file_and_the_dabs_files()
    {
        var line = "1.0," + string.Join(',', Enumerable.Range(0, 28).Select(i => (i * 0.5).ToString(CultureInfo.InvariantCulture)));
        Write("HIGGS.csv", string.Concat(Enumerable.Repeat(line + "\n" + line.Replace("1.0,", "0.0,") + "\n", 5)));
        var uci = DatasetCatalog.Open("higgs", new ReaderOptions(Root, Split.Pretrain));
        var s = Read(uci, 0);
        Assert.Equal(1f, s.Labels[0]);
        Assert.Equal(13.5f, s.Values![27]);

        var header = "," + string.Join(',', Enumerable.Range(0, 29).Select(i => $"c{i}"));
        var rows = string.Join("\n", Enumerable.Range(0, 20).Select(i => $"{i},{i % 2}," + string.Join(',', Enumerable.Repeat("0.25", 28))));
        Write("particle_physics/higgsTransfer.csv", header + "\n" + rows + "\n");
        var train = DatasetCatalog.Open("higgs", new ReaderOptions(Root, Split.Train));
        var test = DatasetCatalog.Open("higgs", new ReaderOptions(Root, Split.Test));
        Assert.Equal(18, train.Count);
        Assert.Equal(2, test.Count);
        Assert.Equal(0.25f, Read(test, 0).Values![5]);
    }

    [Fact]
    public void A_non_numeric_or_nan_feature_is_a_bad_record_with_its_line()
    {
        var good = "1," + string.Join(',', Enumerable.Repeat("1", 28)) + "\n";
        Write("HIGGS.csv", "1," + string.Join(',', Enumerable.Repeat("1", 27)) + ",abc\n0," + string.Join(',', Enumerable.Repeat("1", 27)) + ",nan\n"
                           + string.Concat(Enumerable.Repeat(good, 8)));
        var all = new[] { Split.Train, Split.Test }.Select(s => DatasetCatalog.Open("higgs", new ReaderOptions(Root, s)))
            .SelectMany(d => Enumerable.Range(0, d.Count).Select(i => (d, i))).ToList();
        BadRecordException At(int line)
        {
            var (d, i) = all.Single(r => r.d.Describe(r.i).EndsWith($"HIGGS.csv:{line}"));
            return Assert.Throws<BadRecordException>(() => Read(d, i));
        }
        var e = At(1);
        Assert.EndsWith("HIGGS.csv:1", e.Where);
        Assert.Contains("'abc' is not a number", e.Reason);
        Assert.Contains("NaN", At(2).Reason, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Landsat_pixels_become_a_four_band_3x3_image()
    {
        var v = Enumerable.Range(0, 36).Select(i => (float)i).ToArray();
        var chw = Tables.PixelMajorToChannels(v);
        Assert.Equal(0f, chw[0]);       // band 0, pixel 0
        Assert.Equal(4f, chw[1]);       // band 0, pixel 1
        Assert.Equal(1f, chw[9]);       // band 1, pixel 0
        Assert.Equal(35f, chw[35]);     // band 3, pixel 8
    }

    [Fact]
    public void The_real_tabular_and_satellite_sets_load_with_disjoint_splits()
    {
        var letterTrain = DatasetCatalog.Open("letter", new ReaderOptions(SharedData.Dir("tabular"), Split.Train));
        var letterTest = DatasetCatalog.Open("letter", new ReaderOptions(SharedData.Dir("tabular"), Split.Test));
        Assert.Equal(20_000, letterTrain.Count + letterTest.Count);
        Assert.InRange(letterTrain.Count, 16_000 - 26, 16_000); // 80% of each class, rounded down
        var s = Read(letterTrain, 0);
        Assert.InRange(s.Labels[0], 0, 25);
        Assert.All(s.Values!, v => Assert.InRange(v, 0, 1));
        Assert.Empty(Enumerable.Range(0, letterTest.Count).Select(letterTest.Describe).Intersect(Enumerable.Range(0, letterTrain.Count).Select(letterTrain.Describe)));

        var landTrain = DatasetCatalog.Open("landsat", new ReaderOptions(SharedData.Dir("satellite"), Split.Train));
        var landTest = DatasetCatalog.Open("landsat", new ReaderOptions(SharedData.Dir("satellite"), Split.Test));
        Assert.Equal(6435, landTrain.Count + landTest.Count);
        Assert.Equal(4 * 3 * 3, Read(landTest, 0).Values!.Length);
        Assert.Equal(6, Enumerable.Range(0, landTrain.Count).Select(i => Read(landTrain, i).Labels[0]).Distinct().Count());
    }

    [Fact]
    public void A_file_sorted_by_class_still_gives_every_class_its_share_of_the_test_split()
    {
        // 300 rows of class A, then 100 of B (the UCI layout's habit): the last 10-20% would all be B.
        var sorted = new System.Text.StringBuilder("lettr," + string.Join(",", Enumerable.Range(1, 16).Select(k => $"f{k}")) + "\n");
        for (int i = 0; i < 400; i++) sorted.Append(i < 300 ? "A" : "B").Append(string.Concat(Enumerable.Range(0, 16).Select(k => $",{(i + k) % 15}"))).Append('\n');
        Write("letter_recognition.csv", sorted.ToString());
        var test = DatasetCatalog.Open("letter", new ReaderOptions(Root, Split.Test));
        var train = DatasetCatalog.Open("letter", new ReaderOptions(Root, Split.Train));
        var testLabels = Enumerable.Range(0, test.Count).Select(i => Read(test, i).Labels[0]).ToList();
        Assert.Equal(60, testLabels.Count(l => l == 0));
        Assert.Equal(20, testLabels.Count(l => l == 1));
        Assert.Equal(320, train.Count);
        Assert.Empty(Enumerable.Range(0, test.Count).Select(test.Describe).Intersect(Enumerable.Range(0, train.Count).Select(train.Describe)));

        // HIGGS in the UCI layout (no header: label, 28 features), smaller than a million rows, sorted by label.
        var higgs = new System.Text.StringBuilder();
        for (int i = 0; i < 200; i++) higgs.Append(i < 150 ? "0" : "1").Append(string.Concat(Enumerable.Range(0, 28).Select(k => $",{k * 0.1 + i * 0.001:F3}"))).Append('\n');
        Write("HIGGS.csv", higgs.ToString());
        var higgsTest = DatasetCatalog.Open("higgs", new ReaderOptions(Root, Split.Test));
        var labels = Enumerable.Range(0, higgsTest.Count).Select(i => Read(higgsTest, i).Labels[0]).ToList();
        Assert.Equal((15, 5), (labels.Count(l => l == 0), labels.Count(l => l == 1)));
    }
}
