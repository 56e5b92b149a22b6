using System.IO.Compression;
using System.Text;
using MetaMae.Data.Readers;

namespace MetaMae.Data.Tests;

public class SequenceTests : DataFilesTest
{
    private static Sample Read(IDataset d, int i, long epoch = 0) => d.Read(i, new DecodeContext(0, epoch, i, false));

    [Fact]
    public void Genomics_csv_bytes_literals_become_base_ids()
    {
        var seq = string.Concat(Enumerable.Repeat("ACGT", 63)); // 252 bases
        var rows = Enumerable.Range(0, 10).Select(i => $"{i},x,{10 + i % 3},b'{seq}'");
        Write("genomics/genomicsTransferOOD.csv", "a,b,label,seq\n" + string.Join("\n", rows) + "\n");
        var train = DatasetCatalog.Open("genomics-ood", new ReaderOptions(Root, Split.Train));
        Assert.Equal(9, train.Count);
        var s = Read(train, 0);
        Assert.Equal(new long[] { 0, 1, 2, 3, 0 }, s.Ids![..5]);
        Assert.Equal(250, s.Ids.Length);
        Assert.InRange(s.Labels[0], 0, 2); // OOD labels shifted down by 10
    }

    [Fact]
    public void Pretraining_and_probe_test_records_never_overlap_and_the_split_is_the_data_sets_not_a_runs()
    {
        // A split used to follow the run's seed for pretraining and seed 0 for the probe: with another run seed most
        // probe-test records of this protein set were pretrained on. Splits now take no seed (ReaderOptions has none).
        string[] Names(Split split)
        {
            var d = DatasetCatalog.Open("enzyme", new ReaderOptions(SharedData.Dir("proteins"), split));
            return Enumerable.Range(0, d.Count).Select(d.Describe).ToArray();
        }
        var pretrain = Names(Split.Pretrain);
        var test = Names(Split.Test);
        Assert.Empty(pretrain.Intersect(test));
        Assert.Equal(pretrain.Length, pretrain.Distinct().Count());
        Assert.Equal(pretrain, Names(Split.Train)); // the probe trains on what was pretrained on, never on its test part
        Assert.Equal(test, Names(Split.Test));     // and the same records every time
    }

    [Fact]
    public void Fasta_classes_come_from_headers_and_unknown_bases_are_bad_records()
    {
        var sb = new StringBuilder();
        for (int i = 0; i < 10; i++) sb.Append($">s{i} class={(i % 2 == 0 ? "ei" : "n")}\n{string.Concat(Enumerable.Repeat("ACGTAC", 10))}\n");
        sb.Append(">bad class=n\nACGTNNACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTAC\n");
        Write("splice_junctions.fasta", sb.ToString());
        var all = new[] { Split.Train, Split.Test }.Select(sp => DatasetCatalog.Open("splice", new ReaderOptions(Root, sp))).ToList();
        Assert.Equal(11, all.Sum(d => d.Count));
        var errors = all.SelectMany(d => Enumerable.Range(0, d.Count).Select(i =>
        {
            try { Read(d, i); return null; } catch (BadRecordException e) { return e; }
        })).Where(e => e is not null).ToList();
        var bad = Assert.Single(errors);
        Assert.EndsWith("splice_junctions.fasta:21", bad!.Where);
        Assert.Contains("unknown token 'N'", bad.Reason);
    }

    [Fact]
    public void Long_unlabelled_dna_gives_random_windows_in_pretraining()
    {
        var path = Path.Combine(Root, "fly_upstream_unlabelled.fa.gz");
        using (var gz = new GZipStream(File.Create(path), CompressionLevel.Fastest))
        {
            var rng = new Random(1);
            var seq = new string(Enumerable.Range(0, 2000).Select(_ => "acgt"[rng.Next(4)]).ToArray());
            gz.Write(Encoding.ASCII.GetBytes($">up1 chr2L\n{seq[..1000]}\n{seq[1000..]}\n"));
        }
        var d = DatasetCatalog.Open("fly-upstream", new ReaderOptions(Root, Split.Pretrain));
        Assert.Equal(1, d.Count);
        var a = d.Read(0, new DecodeContext(0, 0, 0, true));
        var b = d.Read(0, new DecodeContext(0, 1, 0, true));
        Assert.Equal(250, a.Ids!.Length);
        Assert.NotEqual(a.Ids, b.Ids);
        Assert.Equal(-1f, a.Labels[0]);
    }

    [Fact]
    public void Protein_tasks_read_dabs_csvs_with_padding_and_per_token_labels()
    {
        Write("pfam/transfer/secondary_structure_train.csv", "id,primary,ss3\n0,ACDE,\"[0, 1, 2, 1]\"\n");
        var ss = DatasetCatalog.Open("secondary-structure", new ReaderOptions(Root, Split.Train));
        var s = Read(ss, 0);
        Assert.Equal(128, s.Ids!.Length);
        Assert.Equal(Sequences.AminoAcids.IndexOf('A'), (int)s.Ids[0]);
        Assert.Equal(0, s.Ids[4]); // padded with X
        Assert.Equal(128, s.Labels.Length);
        Assert.Equal(new float[] { 0, 1, 2, 1, 3, 3 }, s.Labels[..6]);

        Write("pfam/transfer/stability_valid.csv", "primary,stability_score\nMKV,[0.75]\n");
        Assert.Equal(0.75f, Read(DatasetCatalog.Open("stability", new ReaderOptions(Root, Split.Test)), 0).Labels[0]);

        Write("pfam/pfam_pretrain_train.csv", "i,primary,clan\n0,MK,CL0001\n1,MV,CL0007\n");
        var pfam = DatasetCatalog.Open("pfam", new ReaderOptions(Root, Split.Pretrain));
        Assert.Equal(1f, Read(pfam, 1).Labels[0]);
    }

    [Fact]
    public void Text_is_utf8_bytes_and_invalid_utf8_is_a_bad_record()
    {
        Assert.Equal(new long[] { 'h' + 1, 'i' + 1, 0 }, Sequences.EncodeBytes("hi", 3));
        Assert.Equal(new long[] { 0xC3 + 1, 0xA9 + 1 }, Sequences.EncodeBytes("é", 2));
        var bytes = Encoding.UTF8.GetBytes("genre,doc,sentence\nnews,ca01,fine\nnews,ca01,bad ").Concat(new byte[] { 0xFF, 0xFE }).Concat(Encoding.UTF8.GetBytes("\n")).ToArray();
        Write("brown_sentences.csv", bytes);
        var all = new[] { Split.Train, Split.Test }.Select(sp => DatasetCatalog.Open("brown", new ReaderOptions(Root, sp))).Single(d => d.Count > 0);
        var e = Assert.Throws<BadRecordException>(() => Read(all, 1));
        Assert.Contains("UTF-8", e.Reason);
        Assert.EndsWith("brown_sentences.csv:3", e.Where);
    }

    [Fact]
    public void The_real_sequence_sets_load()
    {
        var splice = DatasetCatalog.Open("splice", new ReaderOptions(SharedData.Dir("genomics"), Split.Train));
        Assert.InRange(splice.Count, 2500, 2600);
        Assert.Equal(60, Read(splice, 0).Ids!.Length);
        var fly = DatasetCatalog.Open("fly-upstream", new ReaderOptions(SharedData.Dir("genomics"), Split.Pretrain));
        Assert.Equal(6000, fly.Count);
        var enzyme = DatasetCatalog.Open("enzyme", new ReaderOptions(SharedData.Dir("proteins"), Split.Test));
        Assert.Equal(3600, enzyme.Count);
        Assert.Equal(128, Read(enzyme, 0).Ids!.Length);
        var brownTrain = DatasetCatalog.Open("brown", new ReaderOptions(SharedData.Dir("text"), Split.Train));
        var brownTest = DatasetCatalog.Open("brown", new ReaderOptions(SharedData.Dir("text"), Split.Test));
        Assert.Equal(57_340, brownTrain.Count + brownTest.Count);
        Assert.InRange(brownTest.Count, 57_340 / 10, 57_340 / 3);
        Assert.Equal(15, Enumerable.Range(0, brownTrain.Count).Select(i => Read(brownTrain, i).Labels[0]).Distinct().Count());
    }
}
