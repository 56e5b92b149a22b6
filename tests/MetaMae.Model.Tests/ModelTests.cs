using MetaMae.Model.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

public class ModelTests
{
    internal static ModelConfig Tiny(InputSpec input, Objective objective = Objective.MetaMae, double maskRatio = 0.75) =>
        new(input, new ModelSize(32, 2, 4, 16, 1, 2, 0.0), new ObjectiveOptions { Objective = objective, MaskRatio = maskRatio });

    internal static Tensor Batch(InputSpec input, int n, Generator g) => input.Kind == TokenizerKind.Tokens
        ? randint(0, input.Vocab, [n, .. input.SampleShape], generator: g)
        : randn([n, .. input.SampleShape], generator: g);

    public static TheoryData<string> Inputs => new() { "image", "series", "tokens" };

    internal static InputSpec Spec(string name) => name switch
    {
        "image" => InputSpec.Image(3, 16, 16, 4, 4),
        "series" => InputSpec.Series(5, 40, 5),
        _ => InputSpec.TokenIds(26, 20),
    };

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Shapes_follow_the_input_spec(string name)
    {
        var input = Spec(name);
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        using var model = new MaskedAutoencoder(Tiny(input, maskRatio: 0.75));
        var x = Batch(input, 4, g);
        var draws = MaskingDraws.Sample(4, input.NumTokens, g);
        var output = Objectives.Compute(model, x, draws);
        int keep = Masking.KeptTokens(input.NumTokens, 0.75);
        Assert.Equal(new long[] { 4, 1 + keep, 32 }, output.Latent.shape);
        Assert.Equal(output.Latent.shape, output.AdaptedLatent!.shape);
        var expectedPred = input.Kind == TokenizerKind.Tokens
            ? new long[] { 4, input.Vocab, input.NumTokens }
            : [4, input.NumTokens, input.PatchDim];
        Assert.Equal(expectedPred, output.Pred.shape);
        Assert.Equal(new long[] { 4, 128 }, output.ProjAdapted!.shape);
        model.eval();
        using (no_grad())
        {
            Assert.Equal(new long[] { 4, 32 }, model.Features(x).shape);
            Assert.Equal(new long[] { 4, input.NumTokens, 32 }, model.Features(x, perToken: true).shape);
        }
    }

    [Theory]
    [InlineData(16, 0.75, 4)]
    [InlineData(64, 0.85, 9)]
    [InlineData(128, 0.5, 64)]
    [InlineData(10, 0.5, 5)]
    public void Masking_keeps_floor_of_L_times_one_minus_r(int tokens, double ratio, int expected) =>
        Assert.Equal(expected, Masking.KeptTokens(tokens, ratio));

    [Fact]
    public void Random_masking_keeps_exactly_K_tokens_and_restore_inverts_the_shuffle()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        var x = arange(2 * 64 * 3, dtype: ScalarType.Float32).reshape(2, 64, 3);
        var noise = rand(2, 64, generator: g);
        var (kept, mask, idsRestore) = Masking.RandomMasking(x, noise, 9);
        Assert.Equal(new long[] { 2, 9, 3 }, kept.shape);
        Assert.Equal(new[] { 55f, 55f }, mask.sum(1).data<float>().ToArray());
        // Kept tokens are those with the smallest noise, in noise order.
        var order = noise.argsort(1)[.., ..9];
        Assert.True(Bitwise.Equal(kept, x.gather(1, order.unsqueeze(-1).expand(2, 9, 3))));
        // ids_restore inverts the shuffle: shuffle then restore gives the identity.
        var shuffled = x.gather(1, noise.argsort(1).unsqueeze(-1).expand(2, 64, 3));
        Assert.True(Bitwise.Equal(shuffled.gather(1, idsRestore.unsqueeze(-1).expand(2, 64, 3)), x));
        // mask = 1 exactly where a token was not kept.
        var keptIds = order.sort(1).Values;
        var m = ones(2, 64);
        m.scatter_(1, keptIds, zeros(2, 9));
        Assert.True(Bitwise.Equal(mask, m));
    }

    [Fact]
    public void Support_set_is_visible_plus_sampled_masked_neighbours_2d()
    {
        using var scope = NewDisposeScope();
        var input = InputSpec.Image(1, 12, 12, 4, 4); // 3x3 grid
        // Only the centre token is visible.
        var mask = ones(1, 9);
        mask[0, 4] = 0;
        var nearby = Masking.NearbyMask(mask, input);
        Assert.Equal(new float[] { 0, 1, 0, 1, 1, 1, 0, 1, 0 }, nearby.data<float>().ToArray());
        var uniform = tensor(new float[] { 0.05f, 0.05f, 0.5f, 0.5f, 0.9f, 0.05f, 0.05f, 0.9f, 0.01f }).reshape(1, 9);
        var support = Masking.SupportMask(mask, nearby, uniform, 0.1);
        Assert.Equal(new float[] { 0, 1, 0, 0, 1, 1, 0, 0, 0 }, support.data<float>().ToArray());
    }

    [Fact]
    public void Nearby_mask_1d_uses_left_and_right_neighbours()
    {
        using var scope = NewDisposeScope();
        var mask = tensor(new float[] { 1, 1, 0, 1, 1, 1, 0 }).reshape(1, 7);
        var nearby = Masking.NearbyMask(mask, InputSpec.Series(1, 7, 1));
        Assert.Equal(new float[] { 0, 1, 1, 1, 0, 1, 1 }, nearby.data<float>().ToArray());
    }

    [Fact]
    public void Position_embeddings_are_the_MAE_sincos_tables()
    {
        var t1 = PositionEmbedding.Sincos1d(8, 5);
        Assert.Equal(0f, t1[0, 3]);                       // CLS row is zero
        Assert.Equal((float)Math.Sin(2.0), t1[3, 0]);     // position 2, frequency 1
        Assert.Equal((float)Math.Cos(2.0 / 100.0), t1[3, 6]); // position 2, omega = 1/10000^(2/4)
        var t2 = PositionEmbedding.Sincos2d(8, 3);
        // Token (row 1, col 2): first half encodes the column, second half the row.
        Assert.Equal((float)Math.Sin(2.0), t2[1 + 1 * 3 + 2, 0]);
        Assert.Equal((float)Math.Sin(1.0), t2[1 + 1 * 3 + 2, 4]);
        Assert.Equal((float)Math.Cos(1.0 / 100.0), t2[1 + 1 * 3 + 2, 7]);
    }

    [Fact]
    public void Invalid_configurations_are_rejected_with_reasons()
    {
        Assert.Contains("not divisible", Assert.Throws<ArgumentException>(() => InputSpec.Image(3, 30, 30, 4, 4)).Message);
        Assert.Contains("square", Assert.Throws<ArgumentException>(() => InputSpec.Image(3, 16, 32, 4, 4)).Message);
        Assert.Contains("known presets", Assert.Throws<ArgumentException>(() => Presets.Get("huge")).Message);
        var bad = Tiny(InputSpec.Series(1, 4, 1), maskRatio: 0.9);
        Assert.Contains("keeps no token", Assert.Throws<ArgumentException>(bad.Validate).Message);
        Assert.Contains("heads", Assert.Throws<ArgumentException>(() => new ModelSize(30, 1, 4, 16, 1, 2).Validate()).Message);
    }

    [Fact]
    public void Training_steps_reduce_the_loss_on_a_fixed_batch()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(3);
        var input = InputSpec.Series(2, 16, 2);
        using var model = new MaskedAutoencoder(Tiny(input, maskRatio: 0.5));
        using var optimizer = Optimizers.AdamW(model, lr: 3e-3);
        var g = new Generator(5);
        var x = sin(linspace(0, 12, 32)).reshape(1, 2, 16).repeat(8, 1, 1) + 0.05 * randn(8, 2, 16, generator: g);
        double first = 0, last = 0;
        for (int step = 0; step < 60; step++)
        {
            using var draws = MaskingDraws.Sample(8, input.NumTokens, new Generator((ulong)(100 + step % 4)));
            var m = TrainStep.Run(model, optimizer, x, draws, step, 3e-3);
            Assert.True(m.GradNorm > 0);
            if (step < 4) first += m.Recon;
            if (step >= 56) last += m.Recon;
        }
        Assert.True(last < 0.5 * first, $"reconstruction loss went from {first / 4:F4} to {last / 4:F4}");
    }

    [Fact]
    public void A_non_finite_loss_stops_the_step_before_the_update()
    {
        using var scope = NewDisposeScope();
        var input = InputSpec.Series(1, 8, 2);
        using var model = new MaskedAutoencoder(Tiny(input, maskRatio: 0.5));
        using var optimizer = Optimizers.AdamW(model);
        var before = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var x = full(new long[] { 2, 1, 8 }, double.NaN);
        using var draws = MaskingDraws.Sample(2, input.NumTokens, new Generator(1));
        var e = Assert.Throws<NonFiniteLossException>(() => TrainStep.Run(model, optimizer, x, draws, 12, 1e-4));
        Assert.Equal(12, e.Step);
        Assert.Contains("non-finite loss at step 12", e.Message);
        foreach (var (name, t) in model.state_dict())
            Assert.True(Bitwise.Equal(t, before[name]), $"{name} changed although the step was refused");
    }

    [Fact]
    public void Presets_include_the_paper_backbone()
    {
        var dabs = Presets.Get("dabs");
        Assert.Equal((256, 12, 8, 128, 4, 4), (dabs.EncoderDim, dabs.EncoderDepth, dabs.EncoderHeads, dabs.DecoderDim, dabs.DecoderDepth, dabs.DecoderHeads));
        foreach (var size in Presets.All.Values) size.Validate();
    }

    [Fact]
    public void Mae_and_metamae_at_one_seed_start_from_the_same_encoder_and_decoder()
    {
        var input = Spec("image");
        using var mae = MaskedAutoencoder.Create(Tiny(input, Objective.Mae), seed: 11);
        using var meta = MaskedAutoencoder.Create(Tiny(input, Objective.MetaMae), seed: 11);
        var metaParameters = meta.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in mae.named_parameters())
            Assert.True(p.equal(metaParameters[name]).all().item<bool>(), $"{name} differs between MAE and MetaMAE at the same seed");
        Assert.Contains(metaParameters.Keys, k => k.StartsWith("projector.", StringComparison.Ordinal));
        using var other = MaskedAutoencoder.Create(Tiny(input, Objective.Mae), seed: 12); // and the seed still matters
        Tensor Cls(MaskedAutoencoder m) => m.named_parameters().Single(p => p.name == "cls_token").parameter;
        Assert.False(Cls(other).equal(Cls(mae)).all().item<bool>());
    }
}
