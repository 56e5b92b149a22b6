using MetaMae.Model.Layers;
using static TorchSharp.torch;

namespace MetaMae.Model.Evaluation;

/// <summary>
/// Limited-memory BFGS with a backtracking (Armijo) line search, for the probe's small convex problems (a linear head
/// on fixed features), full batch. TorchSharp 0.107 exposes only libtorch's L-BFGS, which takes unit steps without a
/// line search (it can diverge on unscaled features) and prints a deprecation warning to stderr per optimizer, one per
/// probe fit in every log; this one is 80 lines of tensor algebra on a flat parameter vector.
/// </summary>
public static class Lbfgs
{
    /// <summary>
    /// Minimises f from <paramref name="start"/>: stops when the largest gradient entry is below
    /// <paramref name="gradientTolerance"/>, or a step lowers f by less than <paramref name="changeTolerance"/> x max(1, |f|),
    /// or after <paramref name="maxIterations"/> (the default change tolerance is float32's resolution: smaller changes are
    /// rounding). <paramref name="objective"/> returns f and its gradient at a point.
    /// </summary>
    public static (Tensor Solution, int Iterations, bool Converged) Minimize(Func<Tensor, (Tensor Value, Tensor Gradient)> objective, Tensor start,
        int maxIterations = 2000, double gradientTolerance = 1e-5, double changeTolerance = 1e-7, int history = 20)
    {
        var x = start.detach().clone();
        var (fx, g) = objective(x);
        double f = fx.item<float>();
        var s = new List<Tensor>();
        var y = new List<Tensor>();
        var rho = new List<double>();
        for (int iteration = 0; iteration < maxIterations; iteration++)
        {
            // Each iteration's temporaries die with it; the point, its gradient and the history move out.
            using var scope = NewDisposeScope();
            if (g.abs().max().item<float>() <= gradientTolerance) return (x, iteration, true);
            // Two-loop recursion: d = -H g, H the L-BFGS inverse-Hessian estimate scaled by s'y / y'y.
            var q = g.clone();
            var alpha = new double[s.Count];
            for (int k = s.Count - 1; k >= 0; k--)
            {
                alpha[k] = rho[k] * s[k].dot(q).item<float>();
                q.sub_(y[k].Times(alpha[k]));
            }
            if (s.Count > 0) q.MulInPlace(s[^1].dot(y[^1]).item<float>() / y[^1].dot(y[^1]).item<float>());
            for (int k = 0; k < s.Count; k++)
            {
                double beta = rho[k] * y[k].dot(q).item<float>();
                q.add_(s[k].Times(alpha[k] - beta), Held.One);
            }
            var d = -q;
            double slope = g.dot(d).item<float>();
            if (!(slope < 0)) // not a descent direction (stale curvature): steepest descent, memory cleared
            {
                d = -g;
                slope = -g.dot(g).item<float>();
                foreach (var t in s.Concat(y)) t.Dispose();
                s.Clear(); y.Clear(); rho.Clear();
            }
            double step = iteration == 0 ? Math.Min(1, 1 / g.abs().sum().item<float>()) : 1;
            Tensor xNew = x, gNew = g;
            double fNew = f;
            bool accepted = false;
            for (int tries = 0; tries < 40; tries++, step /= 2)
            {
                xNew = x.Plus(d.Times(step));
                var (value, gradient) = objective(xNew);
                fNew = value.item<float>();
                gNew = gradient;
                if (double.IsFinite(fNew) && fNew <= f + 1e-4 * step * slope)
                {
                    accepted = true;
                    break;
                }
            }
            if (!accepted) return (x, iteration, true); // no step lowers f: at the minimum to float precision
            var sk = xNew - x;
            var yk = gNew - g;
            double sy = sk.dot(yk).item<float>();
            if (sy > 1e-10)
            {
                s.Add(scope.MoveToOuter(sk)); y.Add(scope.MoveToOuter(yk)); rho.Add(1 / sy);
                if (s.Count > history)
                {
                    s[0].Dispose(); y[0].Dispose();
                    s.RemoveAt(0); y.RemoveAt(0); rho.RemoveAt(0);
                }
            }
            bool small = Math.Abs(f - fNew) <= changeTolerance * Math.Max(1, Math.Abs(f));
            var (oldX, oldG) = (x, g);
            (x, f, g) = (scope.MoveToOuter(xNew), fNew, scope.MoveToOuter(gNew));
            oldX.Dispose();
            oldG.Dispose();
            if (small) return (x, iteration + 1, true);
        }
        return (x, maxIterations, false);
    }
}
