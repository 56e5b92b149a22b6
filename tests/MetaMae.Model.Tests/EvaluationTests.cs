using MetaMae.Model.Evaluation;
using static TorchSharp.torch;

namespace MetaMae.Model.Tests;

public class EvaluationTests
{
    [Fact]
    public void Accuracy_and_weighted_f1_match_hand_computed_values()
    {
        int[] actual = [0, 0, 0, 1, 1, 2];
        int[] predicted = [0, 0, 1, 1, 2, 2];
        Assert.Equal(4.0 / 6, Metrics.Accuracy(predicted, actual), 12);
        // Class 0: tp 2 fp 0 fn 1 -> F1 0.8 (support 3); class 1: tp 1 fp 1 fn 1 -> 0.5 (2); class 2: tp 1 fp 1 fn 0 -> 2/3 (1).
        Assert.Equal((0.8 * 3 + 0.5 * 2 + 2.0 / 3 * 1) / 6, Metrics.WeightedF1(predicted, actual), 12);
    }

    [Fact]
    public void Spearman_uses_average_ranks_for_ties_and_pearson_is_linear()
    {
        Assert.Equal(new[] { 1.5, 1.5, 3, 4 }, Metrics.Ranks([2, 2, 5, 9]));
        Assert.Equal(1.0, Metrics.Spearman([1, 2, 3, 4], [10, 20, 30, 1000]), 12);
        Assert.Equal(-1.0, Metrics.Spearman([1, 2, 3], [3, 2, 1]), 12);
        // x = [1,2,2,3], y = [1,3,2,4] -> ranks [1,2.5,2.5,4] and [1,3,2,4]: r = 4.5 / sqrt(4.5 * 5).
        Assert.Equal(4.5 / Math.Sqrt(4.5 * 5), Metrics.Spearman([1, 2, 2, 3], [1, 3, 2, 4]), 12);
        Assert.Equal(1.0, Metrics.Pearson([1, 2, 3], [2, 4, 6]), 12);
    }

    [Fact]
    public void Auroc_counts_pairs_ranked_correctly()
    {
        // Positives score 0.9 and 0.4, negatives 0.5 and 0.1: 3 of 4 pairs ordered -> 0.75.
        Assert.Equal(0.75, Metrics.Auroc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]), 12);
        Assert.Equal(0.5, Metrics.Auroc([0.3, 0.3], [1, 0]), 12);
    }

    private static ProbeData Blobs(int n, int dim, int classes, int seed, float spread = 0.3f)
    {
        var rng = new Random(seed);
        var features = new float[n * dim];
        var labels = new float[n];
        for (int i = 0; i < n; i++)
        {
            int c = i % classes;
            labels[i] = c;
            for (int d = 0; d < dim; d++) features[i * dim + d] = (d == c ? 2f : 0f) + spread * (float)(rng.NextDouble() * 2 - 1);
        }
        return new ProbeData(features, n, 1, dim, labels);
    }

    [Fact]
    public void The_probe_learns_separable_classes_and_scores_chance_on_noise()
    {
        var result = LinearProbe.TrainAndScore(Blobs(300, 8, 4, 1), Blobs(100, 8, 4, 2), ProbeTask.MultiClass, 4, "accuracy",
            new ProbeOptions(Epochs: 30, Lr: 1e-2));
        Assert.True(result.Value > 0.95, $"accuracy {result.Value}");
        // Features that carry nothing about the labels: test accuracy stays near chance (0.25).
        var rng = new Random(9);
        ProbeData Noise(int n) => new(Enumerable.Range(0, n * 8).Select(_ => (float)rng.NextDouble()).ToArray(), n, 1, 8,
            Enumerable.Range(0, n).Select(_ => (float)rng.Next(4)).ToArray());
        var chance = LinearProbe.TrainAndScore(Noise(400), Noise(400), ProbeTask.MultiClass, 4, "accuracy", new ProbeOptions(Epochs: 30, Lr: 1e-2));
        Assert.InRange(chance.Value, 0.0, 0.4);
    }

    [Fact]
    public void The_probe_does_not_touch_the_global_generator()
    {
        random.manual_seed(11);
        using var before = random.get_rng_state();
        LinearProbe.TrainAndScore(Blobs(64, 4, 2, 1), Blobs(32, 4, 2, 2), ProbeTask.Binary, 2, "binary_accuracy", new ProbeOptions(Epochs: 2));
        using var after = random.get_rng_state();
        Assert.True(before.bytes.SequenceEqual(after.bytes));
    }

    [Fact]
    public void Binary_and_regression_probes_score_with_their_metrics()
    {
        var bin = LinearProbe.TrainAndScore(Blobs(200, 4, 2, 1), Blobs(100, 4, 2, 2), ProbeTask.Binary, 2, "binary_accuracy", new ProbeOptions(Epochs: 40, Lr: 1e-2));
        Assert.True(bin.Value > 0.95, $"binary accuracy {bin.Value}");
        var rng = new Random(5);
        ProbeData Line(int n)
        {
            var x = Enumerable.Range(0, n).Select(_ => (float)rng.NextDouble()).ToArray();
            return new ProbeData(x, n, 1, 1, x.Select(v => 3 * v + 1).ToArray());
        }
        var reg = LinearProbe.TrainAndScore(Line(200), Line(50), ProbeTask.Regression, 0, "spearman", new ProbeOptions(Epochs: 50, Lr: 1e-2));
        Assert.True(reg.Value > 0.99, $"spearman {reg.Value}");
    }

    [Fact]
    public void Labels_beyond_the_declared_classes_are_refused_in_words_naming_the_counts()
    {
        var train = new ProbeData(new float[4 * 2], 4, 1, 2, [0, 1, 2, 27]);
        var test = new ProbeData(new float[2 * 2], 2, 1, 2, [1, 3]);
        var e = Assert.Throws<InvalidDataException>(() => LinearProbe.TrainAndScore(train, test, ProbeTask.MultiClass, 3, "accuracy", new ProbeOptions(Epochs: 1)));
        Assert.Contains("0..2 (the data set declares 3 classes)", e.Message);
        Assert.Contains("1 of 4 train and 1 of 2 test labels", e.Message);
        Assert.Contains("largest 27", e.Message);
    }

    [Fact]
    public void A_standardised_probe_scores_an_encoder_the_same_whatever_the_scale_and_offset_of_its_features()
    {
        // A random encoder's features are ~10x smaller than a trained one's and not centred; standardised with the train
        // split's statistics, the probe sees the same problem whatever the per-feature scale and offset.
        var train = Blobs(300, 8, 4, 3, spread: 2.5f);
        var test = Blobs(200, 8, 4, 4, spread: 2.5f);
        var scale = Enumerable.Range(0, 8).Select(d => MathF.Pow(10, d % 4 - 2)).ToArray(); // 0.01 .. 10 per feature
        ProbeData Affine(ProbeData d) => d with { Features = d.Features.Select((v, i) => v * scale[i % 8] + 3f).ToArray() };
        var options = new ProbeOptions(Epochs: 20, Lr: 1e-2, Standardize: true);
        var plain = LinearProbe.TrainAndScore(train, test, ProbeTask.MultiClass, 4, "accuracy", options);
        var rescaled = LinearProbe.TrainAndScore(Affine(train), Affine(test), ProbeTask.MultiClass, 4, "accuracy", options);
        Assert.Equal(plain.Value, rescaled.Value, 2);
        Assert.InRange(plain.Value, 0.4, 1.0); // it learnt something (chance is 0.25)
        // Without standardisation the rescaled features give another result: the scale, not the encoder, decided it.
        var raw = LinearProbe.TrainAndScore(Affine(train), Affine(test), ProbeTask.MultiClass, 4, "accuracy", options with { Standardize = false });
        Assert.NotEqual(plain.Value, raw.Value, 2);
    }
}
