namespace MetaMae.Model.Evaluation;

/// <summary>The DABS transfer metrics as plain functions of predictions and targets.</summary>
public static class Metrics
{
    public static double Accuracy(IReadOnlyList<int> predicted, IReadOnlyList<int> actual)
    {
        Check(predicted.Count, actual.Count);
        int correct = 0;
        for (int i = 0; i < actual.Count; i++) if (predicted[i] == actual[i]) correct++;
        return (double)correct / actual.Count;
    }

    /// <summary>Mean over classes present in <paramref name="actual"/> of F1, weighted by class support (sklearn's 'weighted').</summary>
    public static double WeightedF1(IReadOnlyList<int> predicted, IReadOnlyList<int> actual)
    {
        Check(predicted.Count, actual.Count);
        var classes = actual.Concat(predicted).Distinct();
        double total = 0;
        foreach (var c in classes)
        {
            int tp = 0, fp = 0, fn = 0;
            for (int i = 0; i < actual.Count; i++)
            {
                bool p = predicted[i] == c, a = actual[i] == c;
                if (p && a) tp++; else if (p) fp++; else if (a) fn++;
            }
            int support = tp + fn;
            if (support == 0) continue;
            double f1 = tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
            total += f1 * support;
        }
        return total / actual.Count;
    }

    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        Check(x.Count, y.Count);
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Count; i++)
        {
            sxy += (x[i] - mx) * (y[i] - my);
            sxx += (x[i] - mx) * (x[i] - mx);
            syy += (y[i] - my) * (y[i] - my);
        }
        return sxx == 0 || syy == 0 ? 0 : sxy / Math.Sqrt(sxx * syy);
    }

    /// <summary>Pearson correlation of ranks (ties get their average rank), as scipy.stats.spearmanr.</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y) => Pearson(Ranks(x), Ranks(y));

    /// <summary>Area under the ROC curve of scores for the positive class (ties count one half).</summary>
    public static double Auroc(IReadOnlyList<double> scores, IReadOnlyList<int> positive)
    {
        Check(scores.Count, positive.Count);
        var ranks = Ranks(scores);
        long pos = positive.Count(p => p == 1), neg = positive.Count - pos;
        if (pos == 0 || neg == 0) return double.NaN;
        double sum = 0;
        for (int i = 0; i < ranks.Length; i++) if (positive[i] == 1) sum += ranks[i];
        return (sum - pos * (pos + 1) / 2.0) / (pos * neg);
    }

    public static double[] Ranks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && values[order[j + 1]] == values[order[i]]) j++;
            double rank = (i + j) / 2.0 + 1;
            for (int k = i; k <= j; k++) ranks[order[k]] = rank;
            i = j + 1;
        }
        return ranks;
    }

    private static void Check(int a, int b)
    {
        if (a != b) throw new ArgumentException($"{a} predictions for {b} targets");
        if (a == 0) throw new ArgumentException("no samples to score");
    }
}
