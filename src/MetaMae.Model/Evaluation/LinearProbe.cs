using MetaMae.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MetaMae.Model.Evaluation;

/// <summary>What the probe predicts and how it is scored.</summary>
public enum ProbeTask { MultiClass, Binary, Regression, PerToken }

/// <summary>
/// Probe hyper-parameters. Two protocols:
/// <list type="bullet">
/// <item><see cref="Converge"/> = true (evaluation.protocol "standardized", the default): the linear head is fitted to
/// convergence, full batch, with L-BFGS on the loss plus weight_decay/2 * |W|^2, and the weight decay is chosen from
/// <see cref="WeightDecayGrid"/> by the metric on a stratified <see cref="ValidationFraction"/> of the train split
/// (never the test split), then refitted on the whole train split. Nothing depends on an epoch count or a learning
/// rate, so an encoder is not judged by how fast Adam fits its features.</item>
/// <item><see cref="Converge"/> = false (evaluation.protocol "dabs", the paper's): Adam, lr, weight decay and epochs
/// as given (DABS: 1e-4, 1e-4, 100), minibatches of <see cref="BatchSize"/>.</item>
/// </list>
/// <see cref="Standardize"/>: features are standardised with the train split's per-feature mean and standard deviation
/// (applied to both splits) before the probe sees them, so an encoder is not judged by the scale of its features (a
/// random encoder's are about 10x smaller than a trained one's).
/// </summary>
public sealed record ProbeOptions(int Epochs = 100, double Lr = 1e-4, double WeightDecay = 1e-4, int BatchSize = 256, long Seed = 0,
    bool Standardize = false, bool Converge = false, double ValidationFraction = 0.2)
{
    /// <summary>Weight decays tried by the converged fit, strongest first (see <see cref="LinearProbe"/>'s choice among them).</summary>
    public static readonly double[] WeightDecayGrid = [1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6];

    /// <summary>The paper's protocol: raw features, Adam for the given epochs, learning rate and weight decay.</summary>
    public static ProbeOptions Dabs(int epochs, double lr, double weightDecay, int batchSize, long seed) =>
        new(epochs, lr, weightDecay, batchSize, seed);

    /// <summary>The fair protocol: standardised features, fitted to convergence with a validated weight decay.</summary>
    public static ProbeOptions Standardized(int epochs, double lr, double weightDecay, int batchSize, long seed) =>
        new(epochs, lr, weightDecay, batchSize, seed, Standardize: true, Converge: true);
}

/// <summary>Features and targets of one split: features (N, D) or, per token, (N, L, D); targets per sample or per token.</summary>
public sealed record ProbeData(float[] Features, int Samples, int Tokens, int Dim, float[] Targets);

/// <summary>The probe's score on the test split, with the metric's name and how the head was fitted (for reports).</summary>
public sealed record ProbeResult(string Metric, double Value, double Seconds, string Method = "");

/// <summary>
/// Linear evaluation: one linear layer on frozen features, fitted as <see cref="ProbeOptions"/> says (to convergence, or
/// with the paper's Adam schedule); cross-entropy for classes (per token for secondary structure), sigmoid + BCE for
/// binary sets, MSE for regression. Scored with the data set's metric.
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
        using var gradients = enable_grad(); // the fit differentiates, even when the caller is under no_grad
        int outputs = task switch { ProbeTask.Binary or ProbeTask.Regression => 1, _ => classes };
        var (xTrain, yTrain) = Tensors(train, task, device);
        var (xTest, yTest) = Tensors(test, task, device);
        if (options.Standardize)
        {
            // The train split's statistics, applied to both: nothing is learnt from the test split.
            var mean = xTrain.mean([0L], keepdim: true); // (1, D)
            var std = (xTrain - mean).Squared().mean([0L], keepdim: true).sqrt().Plus(1e-6);
            xTrain = (xTrain - mean) / std;
            xTest = (xTest - mean) / std;
        }
        var features = options.Standardize ? "standardised features" : "raw features";
        Head head;
        string method;
        if (options.Converge)
        {
            var (chosen, how) = ChooseWeightDecay(train, xTrain, yTrain, task, outputs, metric, options, device);
            head = new Head(outputs, train.Dim, device);
            var fit = head.FitToConvergence(xTrain, yTrain, task, chosen);
            method = $"{features}; full-batch L-BFGS to convergence ({fit}); {how}";
        }
        else
        {
            head = Head.DefaultInit(outputs, train.Dim, new Generator((ulong)options.Seed, device), device);
            head.FitAdam(xTrain, yTrain, task, options, device);
            method = $"{features}; Adam lr {options.Lr:G3}, weight decay {options.WeightDecay:G3}, {options.Epochs} epochs of batch {options.BatchSize} (DABS)";
        }
        double value;
        using (no_grad()) value = Score(head.Forward(xTest), yTest, task, metric);
        return new ProbeResult(metric, value, clock.Elapsed.TotalSeconds, method);
    }

    /// <summary>
    /// The weight decay whose head, fitted on the train split less a stratified validation part, scores best there by
    /// the metric, then by the validation loss, then the strongest. Too few samples for a validation part: the
    /// configured weight decay.
    /// </summary>
    private static (double WeightDecay, string How) ChooseWeightDecay(ProbeData train, Tensor x, Tensor y, ProbeTask task, int outputs,
        string metric, ProbeOptions options, Device device)
    {
        // One validation part for every encoder and checkpoint of a data set (seed 0), so their choices are comparable.
        var (fitIdx, valIdx) = ValidationSplit(train, task, options.ValidationFraction, seed: 0);
        if (valIdx.Length < 10 || fitIdx.Length < 10)
            return (options.WeightDecay, $"weight decay {options.WeightDecay:G3} as configured (too few samples for a validation part)");
        using var scope = NewDisposeScope();
        var fitRows = tensor(fitIdx, device: device);
        var valRows = tensor(valIdx, device: device);
        var (xFit, yFit, xVal, yVal) = (x.index_select(0, fitRows), y.index_select(0, fitRows), x.index_select(0, valRows), y.index_select(0, valRows));
        double best = double.NegativeInfinity, bestLoss = double.PositiveInfinity, chosen = options.WeightDecay;
        // One head along the path, strongest decay first, each fit warm-started from the last (a regularisation path).
        // The metric decides; among equal scores (accuracy ties often) the lower validation loss does.
        var head = new Head(outputs, train.Dim, device);
        foreach (var decay in ProbeOptions.WeightDecayGrid)
        {
            head.FitToConvergence(xFit, yFit, task, decay);
            double score, loss;
            using (no_grad())
            {
                var output = head.Forward(xVal);
                score = Score(output, yVal, task, metric);
                loss = Loss(output, yVal, task).item<float>();
            }
            if (double.IsNaN(score)) score = double.NegativeInfinity;
            if (double.IsNaN(loss)) loss = double.PositiveInfinity;
            if (score > best + 1e-12 || Math.Abs(score - best) <= 1e-12 && loss < bestLoss) (best, bestLoss, chosen) = (score, loss, decay);
        }
        var grid = string.Join(", ", ProbeOptions.WeightDecayGrid.Select(d => d.ToString("G3", System.Globalization.CultureInfo.InvariantCulture)));
        var part = (task is ProbeTask.MultiClass or ProbeTask.Binary ? "stratified " : "") + $"{Math.Round(options.ValidationFraction * 100)}%";
        return (chosen, FormattableString.Invariant(
            $"weight decay {chosen:G3} chosen from {grid} on a {part} validation part of the train split ({metric} {best:F4} there)"));
    }

    /// <summary>
    /// Rows of the train tensors for fitting and for validation: a seeded shuffle, per class for classification (every
    /// class keeps its share in both parts), by sample for per-token tasks (a sample's tokens stay together).
    /// </summary>
    public static (long[] Fit, long[] Validation) ValidationSplit(ProbeData train, ProbeTask task, double fraction, long seed)
    {
        var rng = new Random(unchecked((int)(seed * 7919 + 17)));
        IEnumerable<IEnumerable<int>> groups = task is ProbeTask.MultiClass or ProbeTask.Binary
            ? Enumerable.Range(0, train.Samples).GroupBy(i => train.Targets[i]).OrderBy(g => g.Key).Select(g => (IEnumerable<int>)g)
            : [Enumerable.Range(0, train.Samples)];
        var fit = new List<long>();
        var val = new List<long>();
        int per = task == ProbeTask.PerToken ? train.Tokens : 1; // rows per sample
        foreach (var group in groups)
        {
            var samples = group.OrderBy(_ => rng.Next()).ToArray();
            int cut = (int)Math.Round(samples.Length * fraction);
            for (int k = 0; k < samples.Length; k++)
            {
                var target = k < cut ? val : fit;
                for (int t = 0; t < per; t++) target.Add((long)samples[k] * per + t);
            }
        }
        fit.Sort();
        val.Sort();
        return (fit.ToArray(), val.ToArray());
    }

    /// <summary>The linear head: weight (outputs, D) and bias, fitted by Adam (DABS) or to convergence (L-BFGS).</summary>
    private sealed class Head(Parameter weight, Parameter bias)
    {
        /// <summary>Zeros: the regularised logistic (or least-squares) objective is convex, so the start only saves time.</summary>
        public Head(int outputs, int dim, Device device) : this(new Parameter(zeros(outputs, dim, device: device)), new Parameter(zeros(outputs, device: device))) { }

        /// <summary>
        /// nn.Linear's default init (uniform +-1/sqrt(D)), drawn from the probe's own generator: evaluation never
        /// touches libtorch's global generator, so it cannot disturb a learner training in the same process.
        /// </summary>
        public static Head DefaultInit(int outputs, int dim, Generator gen, Device device)
        {
            double bound = 1 / Math.Sqrt(dim);
            return new Head(new Parameter(rand(new long[] { outputs, dim }, generator: gen, device: device).Times(2L).Minus(1L).Times(bound)),
                new Parameter(rand(new long[] { outputs }, generator: gen, device: device).Times(2L).Minus(1L).Times(bound)));
        }

        public Tensor Forward(Tensor x) => nn.functional.linear(x, weight, bias);

        public void FitAdam(Tensor x, Tensor y, ProbeTask task, ProbeOptions options, Device device)
        {
            var gen = new Generator((ulong)options.Seed + 1, device);
            using var optimizer = new Training.HeldAdam([weight, bias], options.Lr, options.WeightDecay);
            long n = x.shape[0];
            for (int epoch = 0; epoch < options.Epochs; epoch++)
            {
                using var epochScope = NewDisposeScope();
                var order = randperm(n, generator: gen, device: device);
                for (long start = 0; start < n; start += options.BatchSize)
                {
                    using var step = NewDisposeScope();
                    var idx = order.narrow(0, start, Math.Min(n, start + options.BatchSize) - start);
                    optimizer.zero_grad();
                    Loss(Forward(x[idx]), y[idx], task).backward();
                    optimizer.step();
                }
            }
        }

        /// <summary>
        /// Minimises loss + decay/2 |W|^2 (bias not decayed) over the whole of (x, y) to convergence with
        /// <see cref="Lbfgs"/>, from the head's current weights; returns "N iterations" for the report.
        /// </summary>
        public string FitToConvergence(Tensor x, Tensor y, ProbeTask task, double decay)
        {
            long wCount = weight.numel();
            var start = cat([weight.detach().flatten(), bias.detach().flatten()]);
            (Tensor, Tensor) Objective(Tensor theta)
            {
                using var scope = NewDisposeScope();
                var p = theta.detach().requires_grad_(true);
                var w = p.narrow(0, 0, wCount).view(weight.shape);
                var b = p.narrow(0, wCount, bias.numel());
                var loss = Loss(nn.functional.linear(x, w, b), y, task).Plus(w.Squared().sum().Times(0.5 * decay));
                var grad = autograd.grad([loss], [p])[0];
                return (scope.MoveToOuter(loss.detach()), scope.MoveToOuter(grad.detach()));
            }
            var (solution, iterations, converged) = Lbfgs.Minimize(Objective, start);
            using (no_grad())
            {
                weight.copy_(solution.narrow(0, 0, wCount).view(weight.shape));
                bias.copy_(solution.narrow(0, wCount, bias.numel()));
            }
            return $"{iterations} iterations{(converged ? "" : ", stopped at the limit")}";
        }
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
