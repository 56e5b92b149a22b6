using System.IO.Compression;
using System.Text;
using MetaMae.Data.Formats;
using MetaMae.Data.Readers;

namespace MetaMae.Data.Tests;

public class FormatAndMultimodalTests : DataFilesTest
{
    private static Sample Read(IDataset d, int i) => d.Read(i, new DecodeContext(0, 0, i, false));

    [Fact]
    public void Mat_v5_reads_compressed_and_plain_numeric_variables()
    {
        foreach (var compress in new[] { true, false })
        {
            var path = Path.Combine(Root, $"m{compress}.mat");
            MatV5.WriteRowVectors(path, new Dictionary<string, double[]> { ["labels"] = [3, 1, 2], ["setid"] = [7] }, compress);
            var vars = MatV5.Read(path);
            Assert.Equal(new double[] { 3, 1, 2 }, vars["labels"].Values);
            Assert.Equal(new[] { 1, 3 }, vars["labels"].Dims);
            Assert.Equal(new double[] { 7 }, vars["setid"].Values);
        }
        Assert.Contains("not a MATLAB", Assert.Throws<FormatException>(() => MatV5.Read(Write("x.mat", new byte[200]))).Message);
    }

    [Fact]
    public void Npy_and_npz_arrays_are_read_and_pickles_refused()
    {
        var data = new byte[] { 1, 2, 3, 4, 5, 6 };
        var npy = Write("a.npy", NpyBytes("|u1", [2, 3], data));
        var a = Npy.Read(npy);
        Assert.Equal(new long[] { 2, 3 }, a.Shape);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, a.ToFloat32());
        var e = Assert.Throws<FormatException>(() => Npy.Read(Write("o.npy", NpyBytes("|O", [1], new byte[8]))));
        Assert.Contains("object arrays", e.Message);
        Assert.Contains("truncated", Assert.Throws<FormatException>(() => Npy.Read(Write("t.npy", NpyBytes("<f4", [4], new byte[8])))).Message);
    }

    [Fact]
    public void Csv_quoted_fields_keep_commas_and_line_numbers()
    {
        var table = CsvTable.Read(Write("q.csv", "a,b\n1,\"x, y\"\n2,z\n"));
        Assert.Equal(new[] { "a", "b" }, table.Header);
        Assert.Equal("x, y", table.Rows[0].Fields[1]);
        Assert.Equal(3, table.Rows[1].Line);
    }

    [Fact]
    public void EuroSat_13_band_geotiffs_are_normalised_per_band()
    {
        var spec = DatasetCatalog.Get("eurosat").Spec;
        foreach (var cls in new[] { "AnnualCrop", "Forest" })
            for (int i = 0; i < 5; i++)
            {
                var chw = new ushort[13 * 64 * 64];
                for (int c = 0; c < 13; c++) Array.Fill(chw, (ushort)Math.Round(Multispectral.EuroSatMean[c] + Multispectral.EuroSatStd[c]), c * 4096, 4096);
                var path = Path.Combine(Root, "EuroSAT_MS", cls, $"{cls}_{i}.tif");
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                Multispectral.WriteBands(path, chw, 13, 64, 64);
            }
        var train = DatasetCatalog.Open("eurosat", new ReaderOptions(Root, Split.Train));
        Assert.Equal(9, train.Count);
        var s = Read(train, 0);
        Assert.Equal(spec.SampleLength, s.Values!.Length);
        for (int c = 0; c < 13; c++)
        {
            var stored = Math.Round(Multispectral.EuroSatMean[c] + Multispectral.EuroSatStd[c]);
            Assert.Equal((stored - Multispectral.EuroSatMean[c]) / Multispectral.EuroSatStd[c], s.Values[c * 4096 + 100], 4);
        }
        var wrong = Path.Combine(Root, "EuroSAT_MS", "Forest", "Forest_0.tif");
        Multispectral.WriteBands(wrong, new ushort[3 * 64 * 64], 3, 64, 64);
        var all = new[] { Split.Train, Split.Test }.Select(sp => DatasetCatalog.Open("eurosat", new ReaderOptions(Root, sp))).ToList();
        var d = all.First(x => Enumerable.Range(0, x.Count).Any(i => x.Describe(i) == wrong));
        var idx = Enumerable.Range(0, d.Count).First(i => d.Describe(i) == wrong);
        Assert.Contains("3 bands, expected 64x64 with 13", Assert.Throws<BadRecordException>(() => Read(d, idx)).Reason);
    }

    [Fact]
    public void Wafer_maps_come_from_an_npz_export()
    {
        var path = Path.Combine(Root, "wm811k.npz");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            var types = new[] { "none", "donut", "unlabeled", "edge-ring", "scratch", "none", "center", "loc", "random", "near-full", "edge-loc" };
            var utf32 = types.SelectMany(t => Encoding.UTF32.GetBytes(t.PadRight(9, '\0'))).ToArray();
            Add(zip, "failure_type.npy", NpyBytes("<U9", [types.Length], utf32));
            for (int i = 0; i < types.Length; i++)
            {
                var map = Enumerable.Range(0, 26 * 30).Select(p => (byte)(p % 3)).ToArray();
                Add(zip, $"map_{i:D6}.npy", NpyBytes("|u1", [26, 30], map));
            }
        }
        var pre = DatasetCatalog.Open("wafer-map", new ReaderOptions(Root, Split.Pretrain));
        Assert.Equal(1, pre.Count);
        var train = DatasetCatalog.Open("wafer-map", new ReaderOptions(Root, Split.Train));
        var test = DatasetCatalog.Open("wafer-map", new ReaderOptions(Root, Split.Test));
        Assert.Equal(10, train.Count + test.Count);
        var s = Read(train, 0);
        Assert.Equal(3 * 32 * 32, s.Values!.Length);
        Assert.InRange(s.Values.Max(), 1.5f / 255, 2.01f / 255); // grey levels 0..2 as DABS feeds them
        Assert.InRange(s.Labels[0], 0, 8);
    }

    private static void Add(ZipArchive zip, string name, byte[] bytes)
    {
        using var s = zip.CreateEntry(name).Open();
        s.Write(bytes);
    }

    [Fact]
    public void Coco_captions_pair_images_with_wordpiece_ids()
    {
        Write("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\ndog\non\nthe\nmat\n##s\n");
        Write("annotations/captions_train2017.json",
            "{\"images\":[{\"id\":1,\"file_name\":\"000000000001.jpg\"}],\"annotations\":[{\"id\":5,\"image_id\":1,\"caption\":\"A dog on the mats\"}]}");
        Write("train2017/000000000001.jpg", Png(50, 60, 0, 1, 0));
        var d = DatasetCatalog.Open("mscoco", new ReaderOptions(Root, Split.Pretrain));
        var s = Read(d, 0);
        Assert.Equal(3 * 224 * 224, s.Values!.Length);
        Assert.Equal(32, s.Ids!.Length);
        Assert.Equal(new long[] { 2, 5, 6, 7, 8, 9, 10, 3, 0 }, s.Ids[..9]);
    }

    [Fact]
    public void A_caption_whose_image_is_missing_is_a_bad_record_naming_the_file()
    {
        Write("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\ndog\n");
        Write("annotations/captions_train2017.json",
            "{\"images\":[{\"id\":1,\"file_name\":\"000000000001.jpg\"},{\"id\":2,\"file_name\":\"000000000002.jpg\"}]," +
            "\"annotations\":[{\"id\":5,\"image_id\":1,\"caption\":\"a dog\"},{\"id\":6,\"image_id\":2,\"caption\":\"a dog\"},{\"id\":7,\"image_id\":3,\"caption\":\"a dog\"}]}");
        Write("train2017/000000000001.jpg", Png(20, 20, 0, 1, 0));
        var d = DatasetCatalog.Open("mscoco", new ReaderOptions(Root, Split.Pretrain));
        Assert.Equal(3, d.Count);
        Assert.Equal(3 * 224 * 224, Read(d, 0).Values!.Length);
        var listed = Assert.Throws<BadRecordException>(() => Read(d, 1)); // listed in images, file absent
        Assert.Contains("000000000002.jpg", listed.Message);
        var unlisted = Assert.Throws<BadRecordException>(() => Read(d, 2)); // image id not in the images list
        Assert.Contains("captions_train2017.json", unlisted.Message);
        Assert.Contains("caption 7 names image_id 3, which the file's \"images\" list does not have", unlisted.Message);
    }

    [Fact]
    public void Vqa_questions_are_labelled_with_their_frequent_answers()
    {
        Write("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nwhat\ncolor\nis\nthe\ndog\n?\n");
        Write("v2_mscoco_train2014_annotations.json",
            "{\"annotations\":[{\"question_id\":1,\"multiple_choice_answer\":\"brown\"},{\"question_id\":2,\"multiple_choice_answer\":\"brown\"},{\"question_id\":3,\"multiple_choice_answer\":\"yes\"}]}");
        Write("v2_OpenEnded_mscoco_train2014_questions.json",
            "{\"questions\":[{\"question_id\":1,\"image_id\":9,\"question\":\"What color is the dog?\"},{\"question_id\":3,\"image_id\":9,\"question\":\"Is the dog?\"}]}");
        Write("train2014/COCO_train2014_000000000009.jpg", Png(40, 40, 1, 0, 0));
        var d = DatasetCatalog.Open("vqa", new ReaderOptions(Root, Split.Train));
        Assert.Equal(2, d.Count);
        var s = Read(d, 0);
        Assert.Equal(0f, s.Labels[0]); // "brown" is the most frequent answer
        Assert.Equal(new long[] { 2, 5, 6, 7, 8, 9, 10, 3 }, s.Ids![..8]);
        Assert.Equal(1f, Read(d, 1).Labels[0]);
    }

    [Fact]
    public void Unknown_data_sets_and_mismatched_shapes_say_what_is_supported()
    {
        var e = Assert.Throws<ArgumentException>(() => DatasetCatalog.Get("imagenet-21k"));
        Assert.Contains("cifar10", e.Message);
        Assert.Contains("pamap2", e.Message);
        var shape = Assert.Throws<ArgumentException>(() => DatasetCatalog.Open("cifar10", new ReaderOptions(Root, Split.Train), [3, 64, 64]));
        Assert.Contains("3x32x32", shape.Message);
        var role = Assert.Throws<ArgumentException>(() => DatasetCatalog.Open("cifar10", new ReaderOptions(Root, Split.Pretrain)));
        Assert.Contains("transfer set", role.Message);
    }

    [Fact]
    public void Catalog_carries_the_dabs_values()
    {
        var s = (string n) => DatasetCatalog.Get(n).Spec;
        Assert.Equal(new[] { 52, 320 }, s("pamap2").Shape);
        Assert.Equal(new[] { 5 }, s("pamap2").Patch);
        Assert.Equal(new[] { 1, 224, 224 }, s("librispeech").Shape);
        Assert.Equal(new[] { 16, 16 }, s("librispeech").Patch);
        Assert.Equal((4, 250), (s("genomics").Vocab, s("genomics").Shape[0]));
        Assert.Equal((26, 128), (s("pfam").Vocab, s("pfam").Shape[0]));
        Assert.Equal(new[] { 13, 64, 64 }, s("eurosat").Shape);
        Assert.Equal(new[] { 8, 8 }, s("eurosat").Patch);
        Assert.Equal(Metric.WeightedF1, s("wafer-map").Metric);
        Assert.Equal(32, s("mscoco").TextLength);
        Assert.Equal(Metric.BinaryAccuracy, s("higgs").Metric);
    }
}
