using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using MetaMae.Data.Formats;
using MetaMae.Data.Pipeline;
using MetaMae.Data.Readers;

namespace MetaMae.Data.Tests;

/// <summary>
/// One bad record or value never sinks a run: every reader's failure on one record is a bad record naming file,
/// record and reason; whole-file failures (not gzip, truncated gzip, zero records) are errors naming the file.
/// </summary>
public sealed class BadInputTests : DataFilesTest
{
    private static IDataset Open(string name, string root, Split split) => DatasetCatalog.Open(name, new ReaderOptions(root, split));

    private static Sample Read(IDataset d, int i) => d.Read(i, new DecodeContext(0, 0, i, false));

    private static string HiggsLine(string label, string value) =>
        label + "," + string.Join(',', Enumerable.Repeat("0.5", 27)) + "," + value + "\n";

    /// <summary>A PNG whose header (valid, CRC included) claims <paramref name="w"/> x <paramref name="h"/> pixels, with no pixel data.</summary>
    private static byte[] LyingPng(int w, int h)
    {
        static byte[] BigEndian(int v) => [(byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v];
        static byte[] Chunk(string type, byte[] data)
        {
            byte[] typed = [.. Encoding.ASCII.GetBytes(type), .. data];
            return [.. BigEndian(data.Length), .. typed, .. BigEndian((int)Crc32(typed))];
        }
        byte[] header = [.. BigEndian(w), .. BigEndian(h), 8, 2, 0, 0, 0];
        var row = new MemoryStream(); // the first scan line only: what a decoder needs to start
        using (var z = new ZLibStream(row, CompressionLevel.Optimal, leaveOpen: true)) z.Write(new byte[1 + 3 * w]);
        return [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A, .. Chunk("IHDR", header), .. Chunk("IDAT", row.ToArray()), .. Chunk("IEND", [])];
    }

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    [Fact]
    public void An_image_whose_header_claims_99999_by_99999_is_a_bad_record_naming_the_file_and_the_limit()
    {
        Write("train/a/huge.png", LyingPng(99999, 99999));
        Write("train/a/ok.png", Png(8, 8, 1, 1, 1));
        Write("val/a/x.png", Png(8, 8, 1, 1, 1));
        var d = Open("imagenet32", Root, Split.Pretrain);
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<BadRecordException>(() => Read(d, 0));
        Assert.EndsWith("huge.png", e.Where);
        Assert.Contains("99999x99999", e.Reason);
        Assert.Contains("decoder limit", e.Reason);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "the decoder allocated before checking the size");
        Assert.Equal(3 * 32 * 32, Read(d, 1).Values!.Length);
    }

    [Fact]
    public void Unrecognised_and_truncated_images_are_bad_records_with_a_readable_reason()
    {
        var png = Png(64, 64, 0.2f, 0.4f, 0.6f);
        Write("train/a/text.png", Encoding.ASCII.GetBytes("this is not an image at all"));
        Write("train/a/zcut.png", png[..(png.Length / 2)]);
        Write("val/a/x.png", Png(8, 8, 1, 1, 1));
        var d = Open("imagenet32", Root, Split.Pretrain);
        var notImage = Assert.Throws<BadRecordException>(() => Read(d, 0));
        Assert.EndsWith("text.png", notImage.Where);
        Assert.Contains("not a decodable image", notImage.Reason);
        Assert.DoesNotContain("codec", notImage.Reason);
        var cut = Assert.Throws<BadRecordException>(() => Read(d, 1));
        Assert.EndsWith("zcut.png", cut.Where);
        Assert.Matches("truncated|could not be decoded|not a decodable", cut.Reason);
    }

    [Fact]
    public async Task A_finite_but_absurd_csv_value_is_a_counted_bad_record_naming_the_line_and_value()
    {
        var good = HiggsLine("1", "0.25");
        // 20 rows of one class: a seeded stratified 90% (18) are the pretraining split. Which rows depends only on the
        // labels and the count, so the absurd value goes on a line that the all-good file shows in that split.
        Write("HIGGS.csv", string.Concat(Enumerable.Repeat(good, 20)));
        int bad = int.Parse(Open("higgs", Root, Split.Pretrain).Describe(2).Split(':')[^1]);
        Write("HIGGS.csv", string.Concat(Enumerable.Range(1, 20).Select(i => i == bad ? HiggsLine("1", "3e38") : good)));
        var d = Open("higgs", Root, Split.Pretrain);
        var log = new List<string>();
        var metrics = new DataMetrics();
        using var system = Akka.Actor.ActorSystem.Create("bounds");
        var batches = await DataFlows.Batches(d, new PipelineSettings { BatchSize = 3, Epochs = 1, Shuffle = false, MaxBadFraction = 0.5 },
                Protocol.StreamPosition.Start, metrics, log.Add)
            .RunWith(Akka.Streams.Dsl.Sink.Seq<Protocol.Batch>(), Akka.Streams.ActorMaterializer.Create(system));
        Assert.Equal(17, batches.Sum(b => b.Size));
        Assert.Equal(1, metrics.Snapshot().BadRecords);
        var line = Assert.Single(log, l => l.Contains($"HIGGS.csv:{bad}"));
        Assert.Contains("3E+38", line, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("max_abs_value", line);
        Assert.All(batches, b => Assert.All(b.Values!, v => Assert.True(Math.Abs(v) <= ValueBounds.DefaultMaxAbs)));
    }

    [Fact]
    public void The_value_bound_is_configurable_and_names_the_element()
    {
        var sample = Sample.Dense([0f, 5000f, 1f], 0);
        Assert.Same(sample, ValueBounds.Check(sample, 1e6, "x"));
        var e = Assert.Throws<BadRecordException>(() => ValueBounds.Check(sample, 1000, "file.csv:9"));
        Assert.Equal("file.csv:9", e.Where);
        Assert.Contains("element 1", e.Reason);
    }

    [Fact]
    public void A_csv_line_over_16_MB_is_one_bad_record_and_the_rest_of_the_file_reads_at_once()
    {
        var good = HiggsLine("1", "0.25");
        var huge = new StringBuilder("0,").Append('7', 17_000_000).Append(",1\n").ToString();
        Write("HIGGS.csv", good + huge + string.Concat(Enumerable.Repeat(good, 8))); // 10 rows
        var clock = Stopwatch.StartNew();
        var pretrain = Open("higgs", Root, Split.Pretrain);
        var test = Open("higgs", Root, Split.Test);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"listing took {clock.Elapsed}");
        Assert.Equal(10, pretrain.Count + test.Count);
        // The unreadable row (its label unknown) is listed in one split, where reading it is a bad record naming the line.
        var (d, at) = new[] { pretrain, test }.SelectMany(x => Enumerable.Range(0, x.Count).Select(i => (x, i))).Single(p => p.Item1.Describe(p.Item2).EndsWith("HIGGS.csv:2"));
        var e = Assert.Throws<BadRecordException>(() => Read(d, at));
        Assert.EndsWith("HIGGS.csv:2", e.Where);
        Assert.Contains("longer than", e.Reason);
        Assert.All(Enumerable.Range(0, pretrain.Count).Where(i => pretrain != d || i != at), i => Assert.Equal(0.25f, Read(pretrain, i).Values![27]));
    }

    [Fact]
    public void Line_limited_reading_passes_short_lines_unchanged_and_cuts_long_ones_with_one_marker()
    {
        var text = "ab\n" + new string('x', 50) + "\ncd\r\n\nlast";
        using var reader = new LineLimitedReader(new StringReader(text), 10);
        var lines = new List<string>();
        for (var l = reader.ReadLine(); l is not null; l = reader.ReadLine()) lines.Add(l);
        Assert.Equal(["ab", new string('x', 10) + LineLimitedReader.Marker, "cd", "", "last"], lines);
        Assert.Equal(1, reader.OverlongLines);
    }

    [Fact]
    public void A_gz_file_that_is_not_gzip_fails_at_once_naming_the_file()
    {
        Write("train-images-idx3-ubyte.gz", "plain text, not gzip");
        Idx.Write(Path.Combine(Root, "train-labels-idx1-ubyte"), [1], [0]);
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<InvalidDataException>(() => Open("fashion-mnist", Root, Split.Train));
        Assert.Contains("train-images-idx3-ubyte.gz", e.Message);
        Assert.Contains("not gzip", e.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void A_truncated_gz_file_fails_naming_the_file_instead_of_being_half_read()
    {
        var images = new byte[200 * 28 * 28];
        new Random(3).NextBytes(images);
        var full = Path.Combine(Root, "full.gz");
        Idx.Write(full, [200, 28, 28], images);
        var bytes = File.ReadAllBytes(full);
        Write("train-images-idx3-ubyte.gz", bytes[..(bytes.Length * 2 / 3)]);
        Idx.Write(Path.Combine(Root, "train-labels-idx1-ubyte"), [200], new byte[200]);
        var e = Assert.Throws<InvalidDataException>(() => Open("fashion-mnist", Root, Split.Train));
        Assert.Contains("train-images-idx3-ubyte.gz", e.Message);
        Assert.Contains("truncated or corrupt", e.Message);
        // The same bytes whole read back exactly.
        Assert.Equal(images, Idx.Read(full).Data);
    }

    [Fact]
    public void A_truncated_gzipped_csv_fails_naming_the_file()
    {
        var good = HiggsLine("1", "0.25");
        var path = Path.Combine(Root, "HIGGS.csv.gz");
        using (var gz = new GZipStream(File.Create(path), CompressionLevel.Optimal))
            gz.Write(Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat(good, 5000))));
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<InvalidDataException>(() => Open("higgs", Root, Split.Pretrain));
        Assert.Contains("HIGGS.csv.gz", e.Message);
    }

    [Fact]
    public void An_idx_file_with_zero_records_fails_naming_the_file()
    {
        Idx.Write(Path.Combine(Root, "train-images-idx3-ubyte.gz"), [0, 28, 28], []);
        Idx.Write(Path.Combine(Root, "train-labels-idx1-ubyte"), [0], []);
        var e = Assert.Throws<InvalidDataException>(() => Open("fashion-mnist", Root, Split.Train));
        Assert.Contains("train-images-idx3-ubyte.gz", e.Message);
        Assert.Contains("0 records", e.Message);
    }

    [Fact]
    public void Whatever_a_decoder_throws_on_one_record_becomes_a_bad_record_naming_it()
    {
        var spec = DatasetCatalog.Get("higgs").Spec;
        var d = new ListDataset<int>(spec, [0, 1, 2], i => $"records.bin#{i}", (i, _) => i switch
        {
            0 => throw new NullReferenceException("a decoder bug"),
            1 => throw new NotSupportedException("an unsupported variant"),
            _ => throw new OutOfMemoryException("a header asked for 40 GB"),
        });
        foreach (var i in new[] { 0, 1, 2 })
        {
            var e = Assert.Throws<BadRecordException>(() => Read(d, i));
            Assert.Equal($"records.bin#{i}", e.Where);
            Assert.False(string.IsNullOrWhiteSpace(e.Reason));
        }
        Assert.Contains("NullReferenceException", Assert.Throws<BadRecordException>(() => Read(d, 0)).Reason);
    }
}
