using MetaMae.Model.Checkpoints;
using MetaMae.Model.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

public sealed class CheckpointTests : IDisposable
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "metamae-ckpt-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
    }

    private static readonly InputSpec Input = InputSpec.Image(2, 8, 8, 2, 2);

    private static CheckpointMeta Meta(MaskedAutoencoder model, long step) =>
        new() { Step = step, Seed = 11, Config = ModelConfigRecord.From(model.Config), Data = new DataPosition(1, 40) };

    private static void Train(MaskedAutoencoder model, optim.Optimizer optimizer, Generator g, int steps, long start)
    {
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            var x = randn(4, 2, 8, 8, generator: g);
            using var draws = MaskingDraws.Sample(4, Input.NumTokens, g);
            TrainStep.Run(model, optimizer, x, draws, start + i, 1e-3);
        }
    }

    [Fact]
    public void Round_trip_is_bitwise_and_keeps_metadata()
    {
        random.manual_seed(1);
        using var model = new MaskedAutoencoder(ModelTests.Tiny(Input));
        var dir = Checkpoint.Save(Path.Combine(root, "step-5"), model, null, Meta(model, 5));
        Checkpoint.Verify(dir);
        var meta = Checkpoint.ReadMeta(dir);
        Assert.Equal(5, meta.Step);
        Assert.Equal(new DataPosition(1, 40), meta.Data);
        Assert.Equal(model.Config.Options, meta.Config.ToConfig().Options);
        Assert.Equal(model.Config.Size, meta.Config.ToConfig().Size);

        random.manual_seed(2);
        using var other = new MaskedAutoencoder(meta.Config.ToConfig());
        Checkpoint.LoadWeights(dir, other);
        var a = model.state_dict();
        foreach (var (name, t) in other.state_dict())
            Assert.True(Bitwise.Equal(t, a[name]), $"{name} differs after the round trip");
        Assert.Contains("patch_embed.proj.weight", a.Keys);
        Assert.Contains("encoder.1.attn.qkv.weight", a.Keys);
        Assert.Contains("projector.1.running_mean", a.Keys);
    }

    [Fact]
    public void Resumed_optimizer_and_rng_continue_exactly_like_an_uninterrupted_run()
    {
        random.manual_seed(4);
        using var straight = new MaskedAutoencoder(ModelTests.Tiny(Input));
        var initial = Checkpoint.Save(Path.Combine(root, "init"), straight, null, Meta(straight, 0));
        using var optStraight = Optimizers.AdamW(straight, lr: 1e-3);
        var g = new Generator(9);
        Train(straight, optStraight, g, 3, 0);
        var mid = Checkpoint.Save(Path.Combine(root, "step-3"), straight, optStraight, Meta(straight, 3), g);
        Train(straight, optStraight, g, 3, 3);

        // A fresh process: different init, state restored from the step-3 checkpoint.
        random.manual_seed(99);
        using var resumed = new MaskedAutoencoder(ModelTests.Tiny(Input));
        using var optResumed = Optimizers.AdamW(resumed, lr: 1e-3);
        Checkpoint.LoadWeights(mid, resumed);
        Checkpoint.LoadOptimizer(mid, optResumed);
        var g2 = new Generator(12345);
        Checkpoint.LoadRng(mid, g2);
        Train(resumed, optResumed, g2, 3, 3);

        var s = straight.state_dict();
        foreach (var (name, t) in resumed.state_dict())
            Assert.True(Bitwise.Equal(t, s[name]), $"{name} differs between resumed and uninterrupted runs");

        // And the optimizer state matters: without it the weights differ.
        random.manual_seed(99);
        using var noOpt = new MaskedAutoencoder(ModelTests.Tiny(Input));
        using var freshOpt = Optimizers.AdamW(noOpt, lr: 1e-3);
        Checkpoint.LoadWeights(mid, noOpt);
        var g3 = new Generator(1);
        Checkpoint.LoadRng(mid, g3);
        Train(noOpt, freshOpt, g3, 3, 3);
        Assert.Contains(noOpt.state_dict(), kv => !Bitwise.Equal(kv.Value, s[kv.Key]));
        Assert.True(Directory.Exists(initial));
    }

    [Fact]
    public void Loading_into_a_different_model_names_what_differs()
    {
        using var model = new MaskedAutoencoder(ModelTests.Tiny(Input));
        var dir = Checkpoint.Save(Path.Combine(root, "a"), model, null, Meta(model, 0));
        var wider = new ModelConfig(Input, new ModelSize(32, 3, 4, 16, 1, 2, 0), new ObjectiveOptions { Objective = Objective.Mae });
        using var other = new MaskedAutoencoder(wider);
        var e = Assert.Throws<CheckpointMismatchException>(() => Checkpoint.LoadWeights(dir, other));
        Assert.Contains("missing from checkpoint: encoder.2.", e.Message);
        Assert.Contains("not in model: projector.", e.Message);

        var otherInput = InputSpec.Image(3, 8, 8, 2, 2);
        using var third = new MaskedAutoencoder(ModelTests.Tiny(otherInput));
        var e2 = Assert.Throws<CheckpointMismatchException>(() => Checkpoint.LoadWeights(dir, third));
        Assert.Contains("patch_embed.proj.weight: checkpoint [32,2,2,2], model [32,3,2,2]", e2.Message);
    }

    [Fact]
    public void Corruption_and_truncation_are_detected_by_the_manifest()
    {
        using var model = new MaskedAutoencoder(ModelTests.Tiny(Input));
        var dir = Checkpoint.Save(Path.Combine(root, "c"), model, null, Meta(model, 0));
        var weights = Path.Combine(dir, Checkpoint.WeightsFile);
        var bytes = File.ReadAllBytes(weights);
        bytes[^10] ^= 0xFF;
        File.WriteAllBytes(weights, bytes);
        Assert.Contains("SHA-256", Assert.Throws<CorruptCheckpointException>(() => Checkpoint.Verify(dir)).Message);

        File.WriteAllBytes(weights, bytes[..100]);
        Assert.Contains("bytes, the manifest says", Assert.Throws<CorruptCheckpointException>(() => Checkpoint.Verify(dir)).Message);

        File.Delete(Path.Combine(dir, Checkpoint.ManifestFile));
        Assert.Contains("no manifest.json", Assert.Throws<CorruptCheckpointException>(() => Checkpoint.Verify(dir)).Message);
    }

    [Fact]
    public void Saving_over_an_existing_checkpoint_replaces_it_and_leaves_no_temporaries()
    {
        using var model = new MaskedAutoencoder(ModelTests.Tiny(Input));
        var dir = Path.Combine(root, "same");
        Checkpoint.Save(dir, model, null, Meta(model, 1));
        Checkpoint.Save(dir, model, null, Meta(model, 2));
        Assert.Equal(2, Checkpoint.ReadMeta(dir).Step);
        Assert.Equal(new[] { "same" }, Directory.GetDirectories(root).Select(Path.GetFileName).ToArray());
    }
}
