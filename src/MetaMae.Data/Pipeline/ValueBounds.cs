namespace MetaMae.Data.Pipeline;

/// <summary>
/// Values that are finite but absurd for any modality (a CSV cell of 3e38, a sensor reading of 1e20) are corruption,
/// not data: one such value drives the loss to infinity and fails the run. A record holding one is a bad record,
/// counted and skipped like an unreadable one, with the record and the value named.
/// </summary>
public static class ValueBounds
{
    /// <summary>
    /// The default bound (config key max_abs_value). Readers normalise images and spectrograms to about [-5, 5];
    /// raw sensor (PAMAP2) and tabular (HIGGS) values stay below 1e4; squared errors of values up to 1e6 stay finite
    /// in float32 (1e12 against a limit of 3.4e38) with a batch's sum of them.
    /// </summary>
    public const double DefaultMaxAbs = 1e6;

    /// <summary>Returns <paramref name="sample"/>, or throws <see cref="BadRecordException"/> for a value beyond the bound.</summary>
    public static Sample Check(Sample sample, double maxAbs, string where)
    {
        if (sample.Values is { } values)
        {
            for (int i = 0; i < values.Length; i++)
            {
                var v = values[i];
                if (!float.IsFinite(v) || Math.Abs(v) > maxAbs)
                    throw new BadRecordException(where, float.IsFinite(v)
                        ? $"value {v:G6} at element {i} is beyond +-{maxAbs:G3} (max_abs_value): taken for corruption"
                        : $"value {v} at element {i} is not finite");
            }
        }
        return sample;
    }
}
