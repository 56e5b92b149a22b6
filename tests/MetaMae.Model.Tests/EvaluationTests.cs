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

    [Fact]
    public void The_converged_probe_fits_small_features_that_the_dabs_schedule_leaves_at_the_majority_class()
    {
        // An untrained encoder's features: std about 0.02, the class signal a tenth of that, two classes of 70% / 30%.
        ProbeData Small(int n, int seed)
        {
            var rng = new Random(seed);
            var f = new float[n * 16];
            var y = new float[n];
            for (int i = 0; i < n; i++)
            {
                y[i] = i % 10 < 7 ? 0 : 1;
                for (int d = 0; d < 16; d++) f[i * 16 + d] = 0.02f * (float)(rng.NextDouble() * 2 - 1) + (d < 4 && y[i] == 1 ? 0.02f : 0f);
            }
            return new ProbeData(f, n, 1, 16, y);
        }
        var (train, test) = (Small(1000, 1), Small(500, 2));
        var dabs = LinearProbe.TrainAndScore(train, test, ProbeTask.MultiClass, 2, "accuracy", ProbeOptions.Dabs(100, 1e-4, 1e-4, 256, 0));
        var fair = LinearProbe.TrainAndScore(train, test, ProbeTask.MultiClass, 2, "accuracy", ProbeOptions.Standardized(100, 1e-4, 1e-4, 256, 0));
        Assert.Equal(0.7, dabs.Value, 2); // the majority class, whatever the features
        Assert.InRange(fair.Value, 0.9, 1.0);
        Assert.Contains("L-BFGS to convergence", fair.Method);
        Assert.Contains("chosen from", fair.Method);
        Assert.Contains("validation part of the train split", fair.Method);
        Assert.Contains("(DABS)", dabs.Method);
    }

    [Fact]
    public void The_probe_fits_even_when_its_caller_is_under_no_grad()
    {
        using var _ = no_grad();
        var result = LinearProbe.TrainAndScore(Blobs(100, 4, 2, 11), Blobs(50, 4, 2, 12), ProbeTask.MultiClass, 2, "accuracy",
            ProbeOptions.Standardized(100, 1e-4, 1e-4, 256, 0));
        Assert.Equal(1.0, result.Value, 6);
    }

    [Fact]
    public void The_converged_probe_does_not_depend_on_learning_rate_or_epochs()
    {
        var (train, test) = (Blobs(400, 8, 4, 5, spread: 2.5f), Blobs(200, 8, 4, 6, spread: 2.5f));
        var a = LinearProbe.TrainAndScore(train, test, ProbeTask.MultiClass, 4, "accuracy", ProbeOptions.Standardized(1, 1e-5, 0, 8, 0));
        var b = LinearProbe.TrainAndScore(train, test, ProbeTask.MultiClass, 4, "accuracy", ProbeOptions.Standardized(500, 1, 1, 512, 7));
        Assert.Equal(a.Value, b.Value, 6);
        Assert.Equal(a.Method, b.Method);
    }

    [Fact]
    public void The_weight_decay_is_chosen_on_validation_data_strong_for_noise_weak_for_a_clean_signal()
    {
        // Many noisy dimensions and few samples: only a strong decay generalises. A clean separable signal: a weak one.
        var noisy = LinearProbe.TrainAndScore(Blobs(120, 200, 2, 7, spread: 3f), Blobs(200, 200, 2, 8, spread: 3f), ProbeTask.MultiClass, 2, "accuracy",
            ProbeOptions.Standardized(100, 1e-4, 1e-4, 256, 0));
        var clean = LinearProbe.TrainAndScore(Blobs(400, 4, 2, 9, spread: 0.1f), Blobs(200, 4, 2, 10, spread: 0.1f), ProbeTask.MultiClass, 2, "accuracy",
            ProbeOptions.Standardized(100, 1e-4, 1e-4, 256, 0));
        double Chosen(string method) => double.Parse(System.Text.RegularExpressions.Regex.Match(method, @"weight decay ([0-9.eE+-]+) chosen").Groups[1].Value,
            System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Chosen(noisy.Method) > Chosen(clean.Method), $"noisy: {noisy.Method}; clean: {clean.Method}");
        Assert.Equal(1.0, clean.Value, 6);
    }

    [Fact]
    public void The_validation_part_is_stratified_disjoint_and_keeps_a_samples_tokens_together()
    {
        var labels = Enumerable.Range(0, 100).Select(i => (float)(i < 80 ? 0 : 1)).ToArray(); // sorted by class, 80 / 20
        var data = new ProbeData(new float[100], 100, 1, 1, labels);
        var (fit, val) = LinearProbe.ValidationSplit(data, ProbeTask.MultiClass, 0.2, seed: 0);
        Assert.Equal(100, fit.Length + val.Length);
        Assert.Empty(fit.Intersect(val));
        Assert.Equal(16, val.Count(i => labels[i] == 0));
        Assert.Equal(4, val.Count(i => labels[i] == 1));
        var perToken = new ProbeData(new float[10 * 5], 10, 5, 1, new float[50]);
        var (_, tokens) = LinearProbe.ValidationSplit(perToken, ProbeTask.PerToken, 0.2, seed: 0);
        Assert.Equal(10, tokens.Length);
        Assert.All(tokens.GroupBy(t => t / 5), g => Assert.Equal(5, g.Count()));
    }

    [Fact]
    public void Raw_features_are_the_input_itself_where_small_and_pooled_where_large()
    {
        // Tokens: one-hot ids flattened (L x V small), token frequencies otherwise, one-hot per token for per-token tasks.
        var ids = new ProbeSplit(null, [0, 2, 2, 1], [0, 1], 2);
        var oneHot = RawFeatures.Of(ids, InputSpec.TokenIds(3, 2), perToken: false);
        Assert.Equal((2, 6), (oneHot.Samples, oneHot.Dim));
        Assert.Equal(new float[] { 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0 }, oneHot.Features);
        var longText = new ProbeSplit(null, Enumerable.Range(0, 100).Select(i => (long)(i % 4 == 0 ? 1 : 7)).ToArray(), [0], 1);
        var bag = RawFeatures.Of(longText, InputSpec.TokenIds(257, 100), perToken: false);
        Assert.Equal(257, bag.Dim);
        Assert.Equal(0.25f, bag.Features[1], 5);
        Assert.Equal(0.75f, bag.Features[7], 5);
        Assert.Equal("token frequencies (bag of tokens)", RawFeatures.Describe(InputSpec.TokenIds(257, 100), false));
        var tokens = RawFeatures.Of(ids, InputSpec.TokenIds(3, 2), perToken: true);
        Assert.Equal((2, 2, 3), (tokens.Samples, tokens.Tokens, tokens.Dim));
        // Floats: flattened when small; a 1x128x128 spectrogram with 16x16 patches: mean and std per patch (8x8x2).
        var small = new ProbeSplit([1, 2, 3, 4], null, [0], 1);
        Assert.Equal(new float[] { 1, 2, 3, 4 }, RawFeatures.Of(small, InputSpec.Series(1, 4, 1), false).Features);
        var image = new float[128 * 128];
        for (int y = 0; y < 128; y++) for (int x = 0; x < 128; x++) image[y * 128 + x] = y < 16 && x < 16 ? (x % 2 == 0 ? 1 : 3) : 5;
        var pooled = RawFeatures.Of(new ProbeSplit(image, null, [0], 1), InputSpec.Image(1, 128, 128, 16, 16), false);
        Assert.Equal(128, pooled.Dim);
        Assert.Equal(new float[] { 2, 1, 5, 0 }, pooled.Features[..4]);
    }
}
