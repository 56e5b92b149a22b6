using System.Text.Json;
using MetaMae.Data.Transforms;

namespace MetaMae.Actors.Tests;

/// <summary>
/// Image+text end to end: `metamae run` pretrains MetaMAE on a small captioned set written in the MSCOCO layout and
/// probes it on questions written in the VQA v2 layout, through the same pipeline, learner and evaluator actors as
/// every other data set.
/// </summary>
public sealed class CaptionedImagesSpecs : TempDirTest
{
    private static readonly (string Name, float R, float G, float B)[] Colours = [("red", 1, 0, 0), ("green", 0, 1, 0), ("blue", 0, 0, 1)];

    private string Data => Path.Combine(Root, "coco");

    private void Write(string relative, string text) => Write(relative, System.Text.Encoding.UTF8.GetBytes(text));

    private void Write(string relative, byte[] bytes)
    {
        var path = Path.Combine(Data, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>A square of one colour on grey, at a position that varies with <paramref name="seed"/>.</summary>
    private static byte[] Picture(int colour, int seed)
    {
        const int size = 64;
        var chw = new float[3 * size * size];
        Array.Fill(chw, 0.5f);
        var (_, r, g, b) = Colours[colour];
        int x0 = seed * 7 % 32, y0 = seed * 13 % 32;
        for (int y = y0; y < y0 + 24; y++)
            for (int x = x0; x < x0 + 24; x++)
            {
                chw[y * size + x] = r;
                chw[size * size + y * size + x] = g;
                chw[2 * size * size + y * size + x] = b;
            }
        return ImageDecoder.EncodePng(chw, size, size);
    }

    private void WriteCocoAndVqa()
    {
        Write("vocab.txt", string.Join("\n", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "square", "on", "grey", "what", "colour", "is", "the", "?",
            "red", "green", "blue", "yes", "no"]) + "\n");
        // MSCOCO 2017 captions: 12 images, two captions each.
        var images = Enumerable.Range(1, 12).Select(i => new { id = i, file_name = $"{i:D12}.jpg" }).ToList();
        var captions = Enumerable.Range(1, 12).SelectMany(i => new[]
        {
            new { id = 2 * i, image_id = i, caption = $"a {Colours[i % 3].Name} square on grey" },
            new { id = 2 * i + 1, image_id = i, caption = $"the square is {Colours[i % 3].Name}" },
        }).ToList();
        Write("annotations/captions_train2017.json", JsonSerializer.Serialize(new { images, annotations = captions }));
        foreach (var i in Enumerable.Range(1, 12)) Write($"train2017/{i:D12}.jpg", Picture(i % 3, i));
        // VQA v2 on COCO 2014: the answer is the square's colour.
        foreach (var (year, count, offset) in new[] { ("train2014", 24, 100), ("val2014", 12, 500) })
        {
            var ids = Enumerable.Range(offset, count).ToList();
            Write($"v2_OpenEnded_mscoco_{year}_questions.json", JsonSerializer.Serialize(new
            {
                questions = ids.Select(q => new { question_id = q, image_id = q, question = "what colour is the square?" }),
            }));
            Write($"v2_mscoco_{year}_annotations.json", JsonSerializer.Serialize(new
            {
                annotations = ids.Select(q => new { question_id = q, multiple_choice_answer = Colours[q % 3].Name }),
            }));
            foreach (var q in ids) Write($"{year}/COCO_{year}_{q:D12}.jpg", Picture(q % 3, q));
        }
    }

    [Fact]
    public void MetaMae_pretrains_on_mscoco_captions_and_is_probed_on_vqa_questions()
    {
        WriteCocoAndVqa();
        var outDir = Path.Combine(Root, "runs");
        // The README's example config, pointed at the small set and shrunk to a test's budget.
        var (code, output, err) = MetamaeCommand.Run(TimeSpan.FromMinutes(6), "run", "--config", Path.Combine(TestRuns.RepoRoot, "config", "runs", "mscoco.json"),
            "--set", $"dataset.root={Data}",
            "--set", $"evaluation.datasets=[{{\"name\": \"vqa\", \"root\": \"{Data}\"}}]",
            "--set", "name=captions", "--set", "preset=tiny", "--set", "steps=6", "--set", "checkpoint_every=3", "--set", "batch_size=8",
            "--out", outDir);
        Assert.True(code == 0, output + err);
        Assert.Contains("completed at step 6", output);
        Assert.Matches(@"step 6/6  loss [0-9.]+ \(recon [0-9.]+: image [0-9.]+, text [0-9.]+, contrastive", output);
        Assert.Contains("| vqa | accuracy | raw input (per-patch mean and standard deviation of the input of the image, with token frequencies (bag of tokens) of the text) | - |", output);
        Assert.Contains("| vqa | accuracy | random init | 0 |", output);
        Assert.Matches(@"\| vqa \| accuracy \| MetaMAE \| 6 \| [0-9.]+", output);

        var runDir = Directory.GetDirectories(outDir).Single();
        var meta = Model.Checkpoints.Checkpoint.ReadMeta(Path.Combine(runDir, "checkpoints", "step-00000006"));
        Assert.Equal(Model.TokenizerKind.ImageText, meta.Config.Kind);
        Assert.Equal(new[] { 224, 224, 32 }, meta.Config.Size);
        // Both modalities' reconstruction losses are logged per step.
        var metrics = File.ReadAllLines(Path.Combine(runDir, "metrics.jsonl"));
        Assert.Contains(metrics, l => l.Contains("\"recon_image\"") && l.Contains("\"recon_text\""));
    }
}
