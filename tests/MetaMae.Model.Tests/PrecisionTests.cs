using MetaMae.Model.Evaluation;
using MetaMae.Model.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

/// <summary>precision = bf16: bf16 matrix products from fp32 master weights agree with fp32 within stated tolerances.</summary>
public class PrecisionTests
{
    private static ModelConfig Config(Precision precision, bool firstOrder = false) =>
        new(InputSpec.Image(1, 16, 16, 4, 4), new ModelSize(32, 2, 4, 16, 1, 2, 0.0),
            new ObjectiveOptions { Objective = Objective.MetaMae, MaskRatio = 0.75, FirstOrder = firstOrder, Precision = precision });

    /// <summary>Two classes of 16x16 images: a bright band in the top or the bottom half, with noise.</summary>
    private static (Tensor X, float[] Labels) Images(int n, ulong seed)
    {
        var g = new Generator(seed);
        var x = randn(new long[] { n, 1, 16, 16 }, generator: g) * 0.3;
        var labels = new float[n];
        for (int i = 0; i < n; i++)
        {
            labels[i] = i % 2;
            x[i, 0, i % 2 == 0 ? TensorIndex.Slice(2, 6) : TensorIndex.Slice(10, 14)] += 1.5;
        }
        return (x, labels);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Bf16_keeps_fp32_master_weights_and_its_losses_and_gradients_agree_with_fp32_on_the_same_weights(bool firstOrder)
    {
        using var scope = NewDisposeScope();
        using var full = MaskedAutoencoder.Create(Config(Precision.Fp32, firstOrder), seed: 5);
        using var half = MaskedAutoencoder.Create(Config(Precision.Bf16, firstOrder), seed: 5);
        var (x, _) = Images(32, 1);
        using var draws = MaskingDraws.Sample(32, 16, new Generator(9));
        var a = Objectives.Compute(full, x, draws);
        var b = Objectives.Compute(half, x, draws);
        Assert.Equal(ScalarType.Float32, b.Total.dtype);
        Assert.Equal(a.Total.item<float>(), b.Total.item<float>(), 0.02 * a.Total.item<float>()); // within 2%
        a.Total.backward();
        b.Total.backward();
        var gradients = half.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!);
        foreach (var (name, p) in full.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, half.named_parameters().Single(q => q.name == name).parameter.dtype);
            var (g32, g16) = (p.grad!, gradients[name]);
            Assert.Equal(ScalarType.Float32, g16.dtype);
            double cosine = nn.functional.cosine_similarity(g32.flatten(), g16.flatten(), dim: 0).item<float>();
            if (g32.norm().item<float>() > 1e-6) Assert.True(cosine > 0.97, $"{name}: gradient cosine {cosine:F4} between fp32 and bf16");
        }
    }

    [Fact]
    public void A_short_bf16_pretraining_follows_the_fp32_loss_curve_and_probes_as_well()
    {
        using var scope = NewDisposeScope();
        var (train, trainLabels) = Images(64, 2);
        var (test, testLabels) = Images(64, 3);
        (double[] Losses, double Accuracy) Pretrain(Precision precision)
        {
            using var model = MaskedAutoencoder.Create(Config(precision), seed: 7);
            using var optimizer = Optimizers.AdamW(model, lr: 2e-3);
            var losses = new List<double>();
            for (int step = 0; step < 40; step++)
            {
                using var draws = MaskingDraws.Sample(64, 16, new Generator((ulong)(50 + step)));
                losses.Add(TrainStep.Run(model, optimizer, train, draws, step, 2e-3).Total);
            }
            model.eval();
            ProbeData Features(Tensor x, float[] labels)
            {
                using var _ = no_grad();
                return new(model.Features(x).data<float>().ToArray(), labels.Length, 1, 32, labels);
            }
            var probe = LinearProbe.TrainAndScore(Features(train, trainLabels), Features(test, testLabels), ProbeTask.MultiClass, 2, "accuracy",
                ProbeOptions.Standardized(100, 1e-4, 1e-4, 256, 0));
            return (losses.ToArray(), probe.Value);
        }
        var fp32 = Pretrain(Precision.Fp32);
        var bf16 = Pretrain(Precision.Bf16);
        // Stated tolerance: every step's loss within 5% of fp32's, the last ten steps' mean within 3%, the probe within 0.05.
        for (int i = 0; i < fp32.Losses.Length; i++)
            Assert.True(Math.Abs(bf16.Losses[i] - fp32.Losses[i]) <= 0.05 * fp32.Losses[i], $"step {i}: fp32 {fp32.Losses[i]:F4}, bf16 {bf16.Losses[i]:F4}");
        Assert.Equal(fp32.Losses[^10..].Average(), bf16.Losses[^10..].Average(), 0.03 * fp32.Losses[^10..].Average());
        Assert.True(fp32.Losses[^1] < 0.9 * fp32.Losses[0], "the fp32 run learnt nothing, so agreement would mean nothing");
        Assert.Equal(fp32.Accuracy, bf16.Accuracy, 0.05);
    }
}
