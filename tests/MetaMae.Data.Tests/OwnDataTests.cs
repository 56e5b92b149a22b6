using System.Text;
using MetaMae.Data.Readers;
using MetaMae.Data.Transforms;
using MetaMae.Protocol;

namespace MetaMae.Data.Tests;

/// <summary>One's own data in the generic formats: specs from the data, splits, statistics, bad records.</summary>
public class OwnDataTests : DataFilesTest
{
    private static Sample Read(IDataset d, int i) => d.Read(i, new DecodeContext(0, 0, i, false));

    private static string X(int[] shape) => string.Join("x", shape);

    private static List<Sample> All(IDataset d) => Enumerable.Range(0, d.Count).Select(i => Read(d, i)).ToList();

    [Fact]
    public void A_table_takes_its_classes_and_features_from_the_file_and_standardises_with_train_statistics_only()
    {
        // Three classes sorted by class, 4 features; a unit column and a constant one. Named by the user, not the catalog.
        var csv = new StringBuilder("height,weight,species,constant,code\n");
        for (int i = 0; i < 90; i++) csv.Append($"{i},{2 * i + 1},{(i < 30 ? "cat" : i < 60 ? "dog" : "eel")},5,{i % 3}\n");
        var path = Write("animals.csv", csv.ToString());
        var d = new DatasetRef { Name = "my-animals", Format = "table", Path = path, LabelColumn = "species" };
        var entry = DatasetCatalog.Resolve(d);
        Assert.Equal("my-animals", entry.Spec.Name);
        Assert.Equal((3, "1x4"), (entry.Spec.Classes, X(entry.Spec.Shape)));
        Assert.Equal(Role.PretrainAndTransfer, entry.Spec.Role);
        var train = DatasetCatalog.Open(d, Split.Train);
        var test = DatasetCatalog.Open(d, Split.Test);
        var pretrain = DatasetCatalog.Open(d, Split.Pretrain);
        Assert.Equal((72, 18), (train.Count, test.Count));
        Assert.Equal(Enumerable.Range(0, 72).Select(train.Describe), Enumerable.Range(0, 72).Select(pretrain.Describe)); // never the test part
        Assert.Equal([6, 6, 6], All(test).GroupBy(s => s.Labels[0]).OrderBy(g => g.Key).Select(g => g.Count()));
        // Standardised with the train part's statistics: mean 0 and std 1 there, a constant column stays finite (std 1).
        var values = All(train).Select(s => s.Values!).ToList();
        for (int f = 0; f < 4; f++)
        {
            var column = values.Select(v => (double)v[f]).ToList();
            Assert.Equal(0, column.Average(), 4);
            if (f != 2) Assert.Equal(1, Math.Sqrt(column.Select(x => x * x).Average()), 4);
        }
        var stats = entry.Spec.Statistics!;
        Assert.Equal(72, stats.Samples);
        // A checkpoint's statistics replace the computed ones (probing as the encoder's pretraining data was standardised).
        var given = new InputStatistics([0, 0, 0, 0], [1, 1, 1, 1], 0);
        Assert.Equal(new float[] { 5, 5 }, All(DatasetCatalog.Open(d, Split.Test, given)).Select(s => s.Values![2]).Take(2));
    }

    [Fact]
    public void A_bad_table_row_is_a_bad_record_naming_line_and_column_and_a_missing_label_column_names_the_columns()
    {
        var path = Write("t.tsv", "label\ta\tb\nx\t1\t2\ny\t3\tabc\nx\t5\t6\ny\t7\t8\nx\t1\t1\ny\t2\t2\nx\t3\t3\ny\t4\t4\nx\t5\t5\ny\t6\t6\n");
        var d = new DatasetRef { Name = "t", Format = "table", Path = path };
        var rows = new[] { Split.Train, Split.Test }.Select(s => DatasetCatalog.Open(d, s)).SelectMany(x => Enumerable.Range(0, x.Count).Select(i => (x, i))).ToList();
        var (set, at) = rows.Single(r => r.x.Describe(r.i).EndsWith("t.tsv:3"));
        var e = Assert.Throws<BadRecordException>(() => Read(set, at));
        Assert.Contains("column 'b' holds 'abc'", e.Reason);
        var missing = Assert.Throws<FormatException>(() => DatasetCatalog.Resolve(d with { LabelColumn = "class", Name = "t2" }));
        Assert.Contains("no label column 'class'; columns are label, a, b", missing.Message);
        Assert.Contains("the name of a catalog data set", Assert.Throws<ArgumentException>(() => DatasetCatalog.Resolve(d with { Name = "letter" })).Message);
    }

    [Fact]
    public void Data_without_labels_is_for_pretraining_only()
    {
        var path = Write("readings.csv", "a,b,c\n" + string.Concat(Enumerable.Range(0, 20).Select(i => $"{i},{i * i},{-i}\n")));
        var d = new DatasetRef { Name = "readings", Format = "table", Path = path };
        var spec = DatasetCatalog.Resolve(d).Spec;
        Assert.Equal((Role.Pretrain, 0, "1x3"), (spec.Role, spec.Classes, X(spec.Shape)));
        Assert.Equal(20, DatasetCatalog.Open(d, Split.Pretrain).Count);
        Assert.Equal(-1, Read(DatasetCatalog.Open(d, Split.Pretrain), 0).Labels[0]);
        Assert.Contains("has no labels", Assert.Throws<ArgumentException>(() => DatasetCatalog.Open(d, Split.Test)).Message);
    }

    [Fact]
    public void Sequences_read_fasta_dna_with_n_and_csv_proteins_cut_or_padded_to_length()
    {
        var fasta = Write("reads.fa", ">r1 class=promoter\nACGTNRacgt\n>r2 class=other\nACG\n>r3 class=promoter\nTTTT\n>r4 class=other\nGGGG\n" +
                                      ">r5 class=promoter\nAAAA\n>r6 class=other\nCCCC\n>r7 class=promoter\nACAC\n>r8 class=other\nGTGT\n");
        var dna = new DatasetRef { Name = "reads", Format = "sequences", Path = fasta, Alphabet = "dna", Length = 8 };
        var spec = DatasetCatalog.Resolve(dna).Spec;
        Assert.Equal((InputKind.Tokens, 5, 2, "8"), (spec.Kind, spec.Vocab, spec.Classes, X(spec.Shape)));
        var all = new[] { Split.Train, Split.Test }.Select(s => DatasetCatalog.Open(dna, s)).SelectMany(x => Enumerable.Range(0, x.Count).Select(i => (x, i))).ToList();
        var (set, at) = all.Single(r => r.x.Describe(r.i).EndsWith("reads.fa:1"));
        Assert.Equal(new long[] { 1, 2, 3, 4, 0, 0, 1, 2 }, Read(set, at).Ids); // N and R read as N (0); the first 8 outside pretraining
        var (short3, at3) = all.Single(r => r.x.Describe(r.i).EndsWith("reads.fa:3"));
        Assert.Equal(new long[] { 1, 2, 3, 0, 0, 0, 0, 0 }, Read(short3, at3).Ids); // padded with N

        var csv = Write("prot.csv", "id,family,seq\n" + string.Concat(Enumerable.Range(0, 10).Select(i => $"p{i},{(i % 2 == 0 ? "kinase" : "lyase")},MKV{new string('A', i)}\n")));
        var protein = new DatasetRef { Name = "prot", Format = "sequences", Path = csv, Alphabet = "protein", LabelColumn = "family", TextColumn = "seq", Length = 6 };
        var p = DatasetCatalog.Open(protein, Split.Train);
        Assert.Equal((26, 2), (p.Spec.Vocab, p.Spec.Classes));
        Assert.All(All(p), s => Assert.Equal(6, s.Ids!.Length));
        Assert.Contains("alphabet 'rna'", Assert.Throws<ArgumentException>(() => DatasetCatalog.Resolve(protein with { Alphabet = "rna" })).Message);
    }

    [Fact]
    public void Text_reads_a_labelled_csv_as_bytes_or_wordpiece_and_a_txt_file_unlabelled()
    {
        var csv = Write("reviews.csv", "stars,body\n" + string.Concat(Enumerable.Range(0, 10).Select(i => $"{(i % 2 == 0 ? "good" : "bad")},\"the film was {(i % 2 == 0 ? "fine" : "dull")}\"\n")));
        var bytes = new DatasetRef { Name = "reviews", Format = "text", Path = csv, LabelColumn = "stars", TextColumn = "body", Length = 16 };
        var b = DatasetCatalog.Open(bytes, Split.Train);
        Assert.Equal((257, 2), (b.Spec.Vocab, b.Spec.Classes));
        Assert.Equal((long)'t' + 1, Read(b, 0).Ids![0]);
        var vocab = Write("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nfilm\nwas\nfine\ndull\n");
        var wp = DatasetCatalog.Open(bytes with { Name = "reviews-wp", Tokenizer = "wordpiece", Vocab = vocab }, Split.Train);
        Assert.Equal(10, wp.Spec.Vocab);
        Assert.Equal(new long[] { 2, 5, 6, 7 }, Read(wp, 0).Ids![..4]); // [CLS] the film was
        var txt = Write("corpus.txt", "first line\n\nsecond line\n");
        var plain = DatasetCatalog.Open(new DatasetRef { Name = "corpus", Format = "text", Path = txt }, Split.Pretrain);
        Assert.Equal((2, Role.Pretrain), (plain.Count, plain.Spec.Role));
    }

    [Fact]
    public void An_audio_folder_resamples_any_rate_to_the_configured_one_and_standardises_with_pretraining_clips()
    {
        // Two classes at two sample rates: a low and a high tone, 0.5 s and 1.5 s long.
        for (int i = 0; i < 6; i++)
        {
            int rate = i % 2 == 0 ? 8000 : 22050;
            AudioFile.WriteWav16(Path.Combine(Directory.CreateDirectory(Path.Combine(Root, "calls", "low")).FullName, $"{i}.wav"), Tone(300, rate, rate / 2), rate);
            AudioFile.WriteWav16(Path.Combine(Directory.CreateDirectory(Path.Combine(Root, "calls", "high")).FullName, $"{i}.wav"), Tone(3000, rate, rate * 3 / 2), rate);
        }
        var d = new DatasetRef { Name = "calls", Format = "audio-folder", Path = Path.Combine(Root, "calls"), SampleRate = 16000, Seconds = 1, Mels = 32, TestFraction = 1.0 / 3 };
        var spec = DatasetCatalog.Resolve(d).Spec;
        Assert.Equal(("1x32x32", "4x4", 2), (X(spec.Shape), X(spec.Patch), spec.Classes));
        Assert.Equal(8, spec.Statistics!.Samples); // the pretraining (train) clips only
        var train = All(DatasetCatalog.Open(d, Split.Train));
        Assert.Equal(8, train.Count);
        var values = train.SelectMany(s => s.Values!).Select(v => (double)v).ToList();
        Assert.Equal(0, values.Average(), 1);
        Assert.Equal(1, Math.Sqrt(values.Select(v => v * v).Average()), 1);
        // The 300 Hz tone's energy sits in lower mel bands than the 3 kHz one's, whatever the file's rate.
        static int Loudest(Sample s) => Enumerable.Range(0, 32).MaxBy(m => Enumerable.Range(0, 8).Sum(t => s.Values![m * 32 + t]));
        var low = train.Where(s => s.Labels[0] == 1).Select(Loudest).ToList();
        var high = train.Where(s => s.Labels[0] == 0).Select(Loudest).ToList();
        Assert.True(low.Max() < high.Min(), $"low-tone bands {string.Join(",", low)}, high-tone bands {string.Join(",", high)}");
    }

    [Fact]
    public void Clips_or_images_without_class_folders_are_unlabelled_pretraining_data()
    {
        for (int i = 0; i < 6; i++) AudioFile.WriteWav16(Path.Combine(Directory.CreateDirectory(Path.Combine(Root, "field", "day" + i % 3)).FullName, $"rec{i}.wav"), Tone(440, 8000, 4000), 8000);
        var audio = new DatasetRef { Name = "field", Format = "audio-folder", Path = Path.Combine(Root, "field") };
        // Sub-folders hold the clips, so they read as classes; clips in the root itself (no class folders) do not.
        Assert.Equal(3, DatasetCatalog.Resolve(audio).Spec.Classes);
        for (int i = 0; i < 3; i++) AudioFile.WriteWav16(Path.Combine(Root, "loose", $"rec{i}.wav").Also(p => Directory.CreateDirectory(Path.GetDirectoryName(p)!)), Tone(440, 8000, 4000), 8000);
        var loose = DatasetCatalog.Open(audio with { Name = "loose", Path = Path.Combine(Root, "loose") }, Split.Pretrain);
        Assert.Equal((Role.Pretrain, 3), (loose.Spec.Role, loose.Count));
        Assert.Equal(-1, Read(loose, 0).Labels[0]);
        for (int i = 0; i < 4; i++) Write($"photos/p{i}.png", Png(8, 8, 0.5f, 0.5f, 0.5f));
        var photos = DatasetCatalog.Open(new DatasetRef { Name = "photos", Format = "image-folder", Path = Path.Combine(Root, "photos"), ImageSize = 8 }, Split.Pretrain);
        Assert.Equal((Role.Pretrain, 4), (photos.Spec.Role, photos.Count));
    }

    [Fact]
    public void An_image_folder_resizes_to_the_configured_size_in_rgb_or_grey()
    {
        for (int i = 0; i < 5; i++)
        {
            Write($"shots/red/{i}.png", Png(40, 30, 1, 0, 0));
            Write($"shots/blue/{i}.png", Png(12, 12, 0, 0, 1));
        }
        Write("shots/notes.txt", "not an image");
        var d = new DatasetRef { Name = "shots", Format = "image-folder", Path = Path.Combine(Root, "shots"), ImageSize = 16 };
        var rgb = DatasetCatalog.Open(d, Split.Train);
        Assert.Equal(("3x16x16", "2x2", 2, 8), (X(rgb.Spec.Shape), X(rgb.Spec.Patch), rgb.Spec.Classes, rgb.Count));
        var grey = All(DatasetCatalog.Open(d with { Channels = 1, Name = "shots-grey" }, Split.Test));
        Assert.All(grey, s => Assert.Equal(256, s.Values!.Length));
        Assert.All(grey, s => Assert.Equal(1f / 3, s.Values![0], 2));
        Assert.Contains("image_size must be a multiple of 8", Assert.Throws<ArgumentException>(() => DatasetCatalog.Resolve(d with { ImageSize = 20 })).Message);
        var empty = Directory.CreateDirectory(Path.Combine(Root, "empty")).FullName;
        Assert.Contains("empty", Assert.Throws<DataLayoutException>(() => DatasetCatalog.Resolve(d with { Path = empty, Name = "e" })).Message);
    }

    [Fact]
    public void A_folder_with_a_link_loop_and_a_link_out_is_walked_once_and_says_what_it_skipped()
    {
        // 2 classes x 5 images, a link back to the root inside one class (a loop: it once turned 30 files into 10,824
        // records, put test files into pretraining and gave images the wrong class) and a link to a folder outside.
        var root = Path.Combine(Root, "looped");
        for (int i = 0; i < 5; i++)
        {
            Write($"looped/cat/c{i}.png", Png(8, 8, 0.9f, 0.1f, 0.1f));
            Write($"looped/dog/d{i}.png", Png(8, 8, 0.1f, 0.1f, 0.9f));
            Write($"outside/o{i}.png", Png(8, 8, 0.5f, 0.5f, 0.5f));
        }
        Directory.CreateSymbolicLink(Path.Combine(root, "cat", "loop"), root);
        Directory.CreateSymbolicLink(Path.Combine(root, "dog", "elsewhere"), Path.Combine(Root, "outside"));
        File.CreateSymbolicLink(Path.Combine(root, "dog", "twin.png"), Path.Combine(root, "cat", "c0.png"));
        var d = new DatasetRef { Name = "looped", Format = "image-folder", Path = root, ImageSize = 8 };
        var pretrain = DatasetCatalog.Open(d, Split.Pretrain);
        var test = DatasetCatalog.Open(d, Split.Test);
        Assert.Equal(10, pretrain.Count + test.Count); // each image once
        var paths = Enumerable.Range(0, pretrain.Count).Select(pretrain.Describe).Concat(Enumerable.Range(0, test.Count).Select(test.Describe)).ToList();
        Assert.Equal(paths.Count, paths.Distinct().Count());
        Assert.DoesNotContain(paths, p => p.Contains("outside") || p.Contains("/loop/") || p.Contains("elsewhere") || p.Contains("twin"));
        Assert.Contains(pretrain.Notes, n => n.Contains("cat/loop:") && n.Contains("link loop"));
        Assert.Contains(pretrain.Notes, n => n.Contains("elsewhere") && n.Contains("a link out of"));
        Assert.Contains(pretrain.Notes, n => n.Contains("twin.png") && n.Contains("again"));
    }

    public static TheoryData<string, string, string> WrongTables => new()
    {
        // file name, contents, what the refusal must say
        { "empty.csv", "", "the file is empty; a header row" },
        { "semicolons.csv", "a;b;label\n1;2;0\n3;4;1\n", "delimited by ';', and this reader takes ','" },
        { "header-only.csv", "a,b,label\n", "a header row and no records" },
        { "nan.csv", "a,label\nNaN,0\nNaN,1\nNaN,0\nNaN,1\nNaN,0\n", "column 'a' holds 'NaN', not a finite number" },
        { "huge.csv", "a,label\n1e300,0\n1e300,1\n1e300,0\n1e300,1\n1e300,0\n", "column 'a' holds '1e300', not a finite number" },
        { "constant.csv", "a,b,label\n1,2,0\n1,2,1\n1,2,0\n1,2,1\n1,2,0\n1,2,1\n", "every feature is constant" },
        { "one-class.csv", "a,label\n1,x\n2,x\n3,x\n", "holds one class ('x') in every record" },
    };

    [Theory]
    [MemberData(nameof(WrongTables))]
    public void A_table_that_cannot_train_is_refused_naming_the_file_and_why(string name, string contents, string why)
    {
        var path = Write(name, contents);
        var e = Record.Exception(() => DatasetCatalog.Resolve(new DatasetRef { Name = "t", Format = "table", Path = path }));
        Assert.NotNull(e);
        Assert.IsNotType<IndexOutOfRangeException>(e);
        Assert.Contains(path, e!.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void Protein_sequences_read_with_the_dna_alphabet_are_refused_instead_of_training_on_padding()
    {
        var path = Write("proteins.fasta", ">p1 class=a\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n>p2 class=b\nMSDNGPQNQRNAPRITFGGPSDSTGSNQNGERS\n");
        var e = Record.Exception(() => DatasetCatalog.Resolve(new DatasetRef { Name = "p", Format = "sequences", Path = path, Alphabet = "dna" }));
        Assert.NotNull(e);
        Assert.Contains("not in the dna alphabet", e!.Message);
        Assert.Contains("Is it protein?", e.Message);
        DatasetCatalog.Resolve(new DatasetRef { Name = "p", Format = "sequences", Path = path, Alphabet = "protein" }); // read as what it is
    }
}

internal static class PathExtensions
{
    /// <summary>Runs <paramref name="action"/> on the value and returns it (for a path whose directory must exist first).</summary>
    public static string Also(this string value, Action<string> action)
    {
        action(value);
        return value;
    }

}
