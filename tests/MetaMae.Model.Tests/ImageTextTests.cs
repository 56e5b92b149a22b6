using MetaMae.Model.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

/// <summary>
/// Image+text (the DABS captioned-images domain): one joint sequence of image patches then caption tokens, masked per
/// modality, reconstructed with a loss per modality; MetaMAE's inner step and contrastive loss on the joint latent.
/// </summary>
public class ImageTextTests
{
    // 16x16 RGB in 4x4 patches (16 patch tokens) and 8 text ids below 20.
    private static readonly InputSpec Input = InputSpec.ImageText(3, 16, 16, 4, 4, vocab: 20, textLength: 8);

    private static ModelConfig Config(Objective objective = Objective.MetaMae, bool firstOrder = false) =>
        new(Input, new ModelSize(16, 1, 2, 8, 2, 2, 0.0),
            new ObjectiveOptions { Objective = objective, MaskRatio = 0.75, TextMaskRatio = 0.5, FirstOrder = firstOrder, InnerLr = 0.5 });

    private static Tensor Batch(int n, ulong seed, ScalarType dtype = ScalarType.Float32)
    {
        var g = new Generator(seed);
        var image = randn(new long[] { n, 3 * 16 * 16 }, generator: g, dtype: dtype);
        var ids = randint(0, 20, new long[] { n, 8 }, generator: g).to_type(dtype);
        return cat([image, ids], 1);
    }

    [Fact]
    public void The_joint_sequence_is_the_images_patches_then_the_texts_tokens_each_masked_at_its_own_ratio()
    {
        Assert.Equal(16 + 8, Input.NumTokens);
        Assert.Equal(16, Input.ImageTokens);
        Assert.Equal(new long[] { 3 * 16 * 16 + 8 }, Input.SampleShape);
        using var scope = NewDisposeScope();
        using var model = MaskedAutoencoder.Create(Config(), seed: 1);
        var x = Batch(6, 2);
        using var draws = MaskingDraws.Sample(6, Input.NumTokens, new Generator(3));
        var enc = model.Encode(x, draws.MaskingNoise);
        // 1 CLS + floor(16 * 0.25) image + floor(8 * 0.5) text tokens kept, per example.
        Assert.Equal(new long[] { 6, 1 + 4 + 4, 16 }, enc.Latent.shape);
        Assert.Equal(12f, enc.Mask[.., ..16].sum(1).min().item<float>());
        Assert.Equal(12f, enc.Mask[.., ..16].sum(1).max().item<float>());
        Assert.Equal(4f, enc.Mask[.., 16..].sum(1).min().item<float>());
        Assert.Equal(4f, enc.Mask[.., 16..].sum(1).max().item<float>());
        // ids_restore is a permutation per row.
        Assert.True(enc.IdsRestore.sort(1).Values.eq(arange(Input.NumTokens).expand(6, -1)).all().item<bool>());

        // Decoding gives patches for the image and logits over the vocabulary for the text.
        var (image, text) = model.DecodeJoint(enc.Latent, enc.IdsRestore);
        Assert.Equal(new long[] { 6, 16, 3 * 4 * 4 }, image.shape);
        Assert.Equal(new long[] { 6, 20, 8 }, text.shape);
        Assert.Equal(new long[] { 6, 16, 48 }, model.Patchify(x).shape);
        Assert.Equal(x[.., (3 * 16 * 16)..].to_type(ScalarType.Int64).data<long>().ToArray(), model.SplitImageText(x).Text.data<long>().ToArray());
    }

    [Fact]
    public void Support_neighbours_stay_within_their_modality()
    {
        using var scope = NewDisposeScope();
        // Only the last image patch (row 3, col 3) and the first text token are visible.
        var mask = ones(1, 24);
        mask[0, 15] = 0;
        mask[0, 16] = 0;
        var near = Masking.NearbyMask(mask, Input);
        var expected = new float[24];
        foreach (var i in new[] { 11, 14, 15 }) expected[i] = 1; // up, left, itself on the 4x4 grid
        foreach (var i in new[] { 16, 17 }) expected[i] = 1;     // itself and the next token, never image patch 15
        Assert.Equal(expected, near[0].data<float>().ToArray());
    }

    [Fact]
    public void The_inner_step_decoding_only_the_support_rows_predicts_what_the_full_decode_predicts_there()
    {
        using var scope = NewDisposeScope();
        using var model = MaskedAutoencoder.Create(Config(), seed: 4);
        var x = Batch(5, 5);
        using var draws = MaskingDraws.Sample(5, Input.NumTokens, new Generator(6));
        var out1 = Objectives.Compute(model, x, draws);
        var (fullImage, fullText) = model.DecodeJoint(out1.Latent, out1.IdsRestore);
        var rows = out1.SupportRows!;
        var support = out1.SupportMask!;
        // Rows are the image's support rows then the text's; each row of the padded index is a real token.
        int imageRows = (int)support[.., ..16].sum(1).max().item<float>();
        var imagePart = rows[.., ..imageRows];
        Close.Tensor(MaskedAutoencoder.TargetRows(fullImage, imagePart), out1.PredSupport!, "image predictions at the support rows");
        Assert.True(rows[.., imageRows..].ge(16).all().item<bool>());
        Assert.True(out1.ReconImage!.item<float>() > 0 && out1.ReconText!.item<float>() > 0);
        Close.Scalar(out1.ReconImage.item<float>() + out1.ReconText.item<float>(), out1.Recon.item<float>(), "recon = 1 x image + 1 x text");
        Assert.Equal(new long[] { 5, 20, 8 }, fullText.shape);
    }

    [Fact]
    public void Caption_padding_is_left_out_of_the_text_loss()
    {
        using var scope = NewDisposeScope();
        using var model = MaskedAutoencoder.Create(Config(Objective.Mae), seed: 3);
        var x = Batch(4, 12);
        x[.., (3 * 16 * 16 + 4)..] = 0; // ids 4..7 of every caption are [PAD] (0)
        x[.., (3 * 16 * 16)..(3 * 16 * 16 + 4)] = x[.., (3 * 16 * 16)..(3 * 16 * 16 + 4)].clamp_min(1);
        using var draws = MaskingDraws.Sample(4, Input.NumTokens, new Generator(13));
        var output = Objectives.Compute(model, x, draws);
        var (_, logits) = model.DecodeJoint(output.Latent, output.IdsRestore);
        var ids = model.SplitImageText(x).Text;
        var perToken = nn.functional.cross_entropy(logits, ids, reduction: nn.Reduction.None);
        var weight = output.Mask[.., 16..] * ids.ne(0);
        Close.Scalar((perToken * weight).sum().item<float>() / weight.sum().item<float>(), output.ReconText!.item<float>(), "text loss over masked non-padding ids");
        // With no padding id, the masked [PAD] positions count too, and the loss differs.
        using var withPads = MaskedAutoencoder.Create(Config(Objective.Mae) with { Options = Config(Objective.Mae).Options with { TextPadId = -1 } }, seed: 3);
        var all = Objectives.Compute(withPads, x, draws).ReconText!.item<float>();
        var allWeight = output.Mask[.., 16..];
        Close.Scalar((perToken * allWeight).sum().item<float>() / allWeight.sum().item<float>(), all, "text loss over every masked id");
        Assert.NotEqual(all, output.ReconText.item<float>());
    }

    /// <summary>
    /// The gradient of the joint MetaMAE loss with respect to the weights, second order, against central finite
    /// differences along a random direction (float64, tiny model). The first-order gradient misses the inner step's
    /// second-order term, so it must disagree with the same finite difference: the check can tell them apart.
    /// </summary>
    [Fact]
    public void The_second_order_joint_gradient_matches_finite_differences_and_the_first_order_one_does_not()
    {
        var before = get_default_dtype();
        set_default_dtype(ScalarType.Float64);
        try
        {
            using var scope = NewDisposeScope();
            using var model = MaskedAutoencoder.Create(Config() with { Options = Config().Options with { InnerLr = 2.0 } }, seed: 7);
            model.to(ScalarType.Float64);
            model.train();
            var x = Batch(4, 8, ScalarType.Float64);
            using var draws = new MaskingDraws(rand(4, Input.NumTokens, generator: new Generator(9)), rand(4, Input.NumTokens, generator: new Generator(10)));
            var parameters = model.parameters().Where(p => p.requires_grad).ToList();
            var g = new Generator(11);
            var direction = parameters.Select(p => randn(p.shape, generator: g, dtype: ScalarType.Float64)).ToList();

            double Analytic(bool firstOrder)
            {
                using var s = NewDisposeScope();
                var options = model.Config.Options;
                using var m2 = firstOrder ? FirstOrderTwin(model) : null;
                var used = m2 ?? model;
                foreach (var p in used.parameters()) p.grad?.zero_();
                Objectives.Compute(used, x, draws).Total.backward();
                return used.parameters().Where(p => p.requires_grad).Zip(direction).Sum(pd => (pd.First.grad! * pd.Second).sum().item<double>());
            }

            double Loss()
            {
                using var s = NewDisposeScope();
                return Objectives.Compute(model, x, draws).Total.item<double>();
            }

            const double eps = 1e-5;
            void Shift(double by)
            {
                using var _ = no_grad();
                foreach (var (p, d) in parameters.Zip(direction)) p.add_(d * by);
            }
            Shift(eps);
            double plus = Loss();
            Shift(-2 * eps);
            double minus = Loss();
            Shift(eps);
            double numeric = (plus - minus) / (2 * eps);

            double second = Analytic(firstOrder: false), first = Analytic(firstOrder: true);
            Assert.True(Math.Abs(second - numeric) <= 1e-6 * Math.Max(1, Math.Abs(numeric)),
                $"second order {second} vs finite differences {numeric}");
            Assert.True(Math.Abs(first - numeric) > 1e-4 * Math.Max(1, Math.Abs(numeric)),
                $"first order {first} should miss the second-order term (finite differences {numeric})");
        }
        finally
        {
            set_default_dtype(before);
        }
    }

    /// <summary>The same weights under the first-order objective.</summary>
    private static MaskedAutoencoder FirstOrderTwin(MaskedAutoencoder model)
    {
        var twin = MaskedAutoencoder.Create(model.Config with { Options = model.Config.Options with { FirstOrder = true } }, seed: 0);
        twin.to(ScalarType.Float64);
        twin.train();
        twin.load_state_dict(model.state_dict());
        return twin;
    }

    [Fact]
    public void An_image_text_model_round_trips_through_its_checkpoint_config_and_plain_mae_trains_on_it()
    {
        var record = ModelConfigRecord.From(Config(Objective.Mae));
        Assert.Equal(new[] { 16, 16, 8 }, record.Size);
        var back = record.ToConfig();
        Assert.Equal(Input.ToString(), back.Input.ToString());
        using var scope = NewDisposeScope();
        using var model = MaskedAutoencoder.Create(back, seed: 2);
        using var draws = MaskingDraws.Sample(3, Input.NumTokens, new Generator(1));
        var output = Objectives.Compute(model, Batch(3, 4), draws);
        Assert.Null(output.Contrastive);
        Assert.True(float.IsFinite(output.Total.item<float>()));
        Close.Scalar(output.ReconImage!.item<float>() + output.ReconText!.item<float>(), output.Total.item<float>(), "MAE total");
        output.Total.backward();
        Assert.True(model.named_parameters().Single(p => p.name == "text_embed.proj.weight").parameter.grad!.abs().sum().item<float>() > 0);
    }
}
