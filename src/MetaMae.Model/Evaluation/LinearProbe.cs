using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Evaluation;

/// <summary>What the probe predicts and how it is scored.</summary>
public enum ProbeTask { MultiClass, Binary, Regression, PerToken }

/// <summary>
/// Probe hyper-parameters: the DABS protocol's defaults (Adam, lr 1e-4, weight decay 1e-4, 100 epochs).
/// <see cref="Standardize"/>: features are standardised with the train split's per-feature mean and standard deviation
/// (applied to both splits) before the probe sees them, so an encoder is not judged by the scale of its features (a
/// random encoder's are about 10x smaller than a trained one's, which a fixed Adam budget cannot fit).
/// </summary>
public sealed record ProbeOptions(int Epochs = 100, double Lr = 1e-4, double WeightDecay = 1e-4, int BatchSize = 256, long Seed = 0,
    bool Standardize = false);

/// <summary>Features and targets of one split: features (N, D) or, per token, (N, L, D); targets per sample or per token.</summary>
public sealed record ProbeData(float[] Features, int Samples, int Tokens, int Dim, float[] Targets);

/// <summary>The probe's score on the test split, with the metric's name.</summary>
public sealed record ProbeResult(string Metric, double Value, double Seconds);

/// <summary>
/// Linear evaluation: one linear layer on frozen features, trained with Adam; cross-entropy for classes (per token
/// for secondary structure), sigmoid + BCE for binary sets, MSE for regression. Scored with the data set's metric.
/// </summary>
public static class LinearProbe
{
    /// <summary>
    /// Labels outside [0, classes) are a data error, said in words before libtorch meets them (it would stop with
    /// "Target 27 is out of bounds" and a native stack).
    /// </summary>
    public static void CheckLabels(ProbeData train, ProbeData test, int classes)
    {
        static (int Bad, float Max) Count(ProbeData d, int classes) =>
            (d.Targets.Count(t => t < 0 || t >= classes || t != MathF.Floor(t)), d.Targets.Length == 0 ? 0 : d.Targets.Max());
        var (badTrain, maxTrain) = Count(train, classes);
        var (badTest, maxTest) = Count(test, classes);
        if (badTrain + badTest > 0)
            throw new InvalidDataException(
                $"labels must be class numbers 0..{classes - 1} (the data set declares {classes} classes), but {badTrain} of {train.Targets.Length} " +
                $"train and {badTest} of {test.Targets.Length} test labels are not (largest {Math.Max(maxTrain, maxTest):0.##}); " +
                "check the label column and the class count");
    }

    public static ProbeResult TrainAndScore(ProbeData train, ProbeData test, ProbeTask task, int classes, string metric, ProbeOptions options,
        Device? device = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        if (task == ProbeTask.MultiClass) CheckLabels(train, test, classes);
        device ??= CPU;
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)options.Seed, device);
        int outputs = task switch { ProbeTask.Binary or ProbeTask.Regression => 1, _ => classes };
        // nn.Linear's default init (uniform +-1/sqrt(D)), drawn from the probe's own generator: evaluation never
        // touches libtorch's global generator, so it cannot disturb a learner training in the same process.
        double bound = 1 / Math.Sqrt(train.Dim);
        var weight = new Parameter((rand(new long[] { outputs, train.Dim }, generator: gen, device: device) * 2 - 1) * bound);
        var bias = new Parameter((rand(new long[] { outputs }, generator: gen, device: device) * 2 - 1) * bound);
        Tensor Head(Tensor x) => nn.functional.linear(x, weight, bias);
        using var optimizer = optim.Adam([weight, bias], lr: options.Lr, weight_decay: options.WeightDecay);
        var (xTrain, yTrain) = Tensors(train, task, device);
        Tensor? mean = null, std = null;
        if (options.Standardize)
        {
            mean = xTrain.mean([0L], keepdim: true); // (1, D)
            std = (xTrain - mean).square().mean([0L], keepdim: true).sqrt() + 1e-6;
            xTrain = (xTrain - mean) / std;
        }
        long n = xTrain.shape[0];
        for (int epoch = 0; epoch < options.Epochs; epoch++)
        {
            var order = randperm(n, generator: gen, device: device);
            for (long start = 0; start < n; start += options.BatchSize)
            {
                using var step = NewDisposeScope();
                var idx = order.narrow(0, start, Math.Min(n, start + options.BatchSize) - start);
                optimizer.zero_grad();
                var loss = Loss(Head(xTrain[idx]), yTrain[idx], task);
                loss.backward();
                optimizer.step();
            }
        }
        var (xTest, yTest) = Tensors(test, task, device);
        if (mean is not null) xTest = (xTest - mean) / std!; // the train split's statistics: nothing learnt from the test split
        double value;
        using (no_grad())
        {
            var output = Head(xTest);
            value = Score(output, yTest, task, metric);
        }
        return new ProbeResult(metric, value, clock.Elapsed.TotalSeconds);
    }

    private static (Tensor X, Tensor Y) Tensors(ProbeData d, ProbeTask task, Device device)
    {
        var x = tensor(d.Features, device: device).reshape(task == ProbeTask.PerToken ? [d.Samples * d.Tokens, d.Dim] : [d.Samples, d.Dim]);
        var y = task switch
        {
            ProbeTask.Regression or ProbeTask.Binary => tensor(d.Targets, device: device),
            _ => tensor(d.Targets.Select(v => (long)v).ToArray(), device: device),
        };
        return (x, y);
    }

    private static Tensor Loss(Tensor output, Tensor target, ProbeTask task) => task switch
    {
        ProbeTask.Binary => nn.functional.binary_cross_entropy_with_logits(output.squeeze(-1), target),
        ProbeTask.Regression => nn.functional.mse_loss(output.squeeze(-1), target),
        _ => nn.functional.cross_entropy(output, target),
    };

    private static double Score(Tensor output, Tensor target, ProbeTask task, string metric)
    {
        switch (task)
        {
            case ProbeTask.Binary:
            {
                var scores = output.squeeze(-1).to_type(ScalarType.Float64).cpu().data<double>().ToArray();
                var actual = target.cpu().data<float>().Select(v => (int)v).ToArray();
                return metric == "auroc" ? Metrics.Auroc(scores, actual) : Metrics.Accuracy(scores.Select(s => s > 0 ? 1 : 0).ToArray(), actual);
            }
            case ProbeTask.Regression:
            {
                var p = output.squeeze(-1).to_type(ScalarType.Float64).cpu().data<double>().ToArray();
                var a = target.to_type(ScalarType.Float64).cpu().data<double>().ToArray();
                return metric == "pearson" ? Metrics.Pearson(p, a) : Metrics.Spearman(p, a);
            }
            default:
            {
                var predicted = output.argmax(-1).cpu().data<long>().Select(v => (int)v).ToArray();
                var actual = target.cpu().data<long>().Select(v => (int)v).ToArray();
                return metric == "weighted_f1" ? Metrics.WeightedF1(predicted, actual) : Metrics.Accuracy(predicted, actual);
            }
        }
    }
}
