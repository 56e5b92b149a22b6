using NWaves.Transforms;

namespace MetaMae.Data.Transforms;

/// <summary>
/// DABS's speech features, as librosa computes them: pad with silence or crop to 150,526 samples; centred STFT
/// (n_fft 2048, hop 672, periodic Hann window, zero padding); power spectrogram; Slaney mel filterbank of 224 bands
/// (Slaney scale and area normalisation, 0 Hz to Nyquist); power_to_db of the squared mel spectrogram (ref 1,
/// amin 1e-10, top_db 80); then the data set's mean/std. Output (1, 224, 224), mel bands by frames.
/// </summary>
public sealed class LogMel
{
    /// <summary>DABS's shape: 150,526 samples, n_fft 2048, hop 672, 224 mel bands by 224 frames.</summary>
    public const int MaxLength = 150_526, FftSize = 2048, Hop = 672, Mels = 224;

    private readonly float[] window;
    private readonly double[][] filters; // (mels, fftSize/2 + 1)
    private readonly (int Start, int End)[] support;
    private readonly int fftSize, hop, mels, frames, length;

    public int SampleRate { get; }

    /// <summary>DABS's transform at <paramref name="sampleRate"/>.</summary>
    public LogMel(int sampleRate) : this(sampleRate, MaxLength, FftSize, Hop, Mels, Frames) { }

    /// <summary>
    /// Any shape: signals of <paramref name="length"/> samples, <paramref name="mels"/> bands by <paramref name="frames"/>
    /// frames (the first frames of a centred STFT with <paramref name="hop"/>).
    /// </summary>
    public LogMel(int sampleRate, int length, int fftSize, int hop, int mels, int frames)
    {
        if (frames > 1 + length / hop) throw new ArgumentException($"{length} samples with hop {hop} give {1 + length / hop} frames, fewer than {frames}");
        SampleRate = sampleRate;
        (this.length, this.fftSize, this.hop, this.mels, this.frames) = (length, fftSize, hop, mels, frames);
        window = new float[fftSize];
        for (int i = 0; i < fftSize; i++) window[i] = (float)(0.5 - 0.5 * Math.Cos(2 * Math.PI * i / fftSize));
        filters = SlaneyFilterbank(sampleRate, fftSize, mels, 0, sampleRate / 2.0);
        support = filters.Select(f =>
        {
            int s = Array.FindIndex(f, v => v != 0), e = Array.FindLastIndex(f, v => v != 0);
            return s < 0 ? (0, -1) : (s, e);
        }).ToArray();
    }

    /// <summary>
    /// A square (<paramref name="mels"/> x <paramref name="mels"/>) log-mel of <paramref name="seconds"/> at
    /// <paramref name="sampleRate"/>: the hop spreads the frames over the clip, the FFT covers at least two hops (and 25 ms).
    /// </summary>
    public static LogMel Square(int sampleRate, double seconds, int mels)
    {
        int length = (int)Math.Round(sampleRate * seconds);
        int hop = Math.Max(1, length / (mels - 1));
        int fft = 256;
        while (fft < 2 * hop || fft < sampleRate / 40) fft *= 2;
        return new LogMel(sampleRate, length, fft, hop, mels, mels);
    }

    /// <summary>Samples a signal must have.</summary>
    public int Length => length;

    /// <summary>Frames of a 150,526-sample signal: 1 + 150526 / 672 = 224.</summary>
    public static int Frames => 1 + MaxLength / Hop;

    /// <summary>Pads with silence or crops to <see cref="MaxLength"/>: the first samples, or the last when <paramref name="keepEnd"/>.</summary>
    public static float[] Fit(ReadOnlySpan<float> wave, bool keepEnd) => Fit(wave, keepEnd, MaxLength);

    /// <summary>Pads with silence or crops to <paramref name="length"/> samples.</summary>
    public static float[] Fit(ReadOnlySpan<float> wave, bool keepEnd, int length)
    {
        var result = new float[length];
        if (wave.Length > length) (keepEnd ? wave[^length..] : wave[..length]).CopyTo(result);
        else wave.CopyTo(result);
        return result;
    }

    /// <summary>(mels x frames) log-mel of a fitted signal, normalised with (mean, std), row-major.</summary>
    public float[] Compute(float[] signal, double mean, double std)
    {
        if (signal.Length != length) throw new ArgumentException($"signal must have {length} samples, has {signal.Length}");
        int bins = fftSize / 2 + 1, pad = fftSize / 2;
        var fft = new RealFft(fftSize);
        var frame = new float[fftSize];
        var re = new float[fftSize];
        var im = new float[fftSize];
        var power = new double[bins];
        var mel = new double[mels * frames];
        for (int t = 0; t < frames; t++)
        {
            int start = t * hop - pad;
            for (int i = 0; i < fftSize; i++)
            {
                int j = start + i;
                frame[i] = j >= 0 && j < signal.Length ? signal[j] * window[i] : 0f;
            }
            fft.Direct(frame, re, im);
            for (int k = 0; k < bins; k++) power[k] = (double)re[k] * re[k] + (double)im[k] * im[k];
            for (int m = 0; m < mels; m++)
            {
                double acc = 0;
                var f = filters[m];
                for (int k = support[m].Start; k <= support[m].End; k++) acc += f[k] * power[k];
                mel[m * frames + t] = acc;
            }
        }
        // power_to_db(S ** 2): 10 log10(max(amin, S^2)), floored at max - top_db.
        var db = new double[mel.Length];
        double top = double.NegativeInfinity;
        for (int i = 0; i < mel.Length; i++)
        {
            db[i] = 10 * Math.Log10(Math.Max(1e-10, mel[i] * mel[i]));
            top = Math.Max(top, db[i]);
        }
        var result = new float[mel.Length];
        for (int i = 0; i < mel.Length; i++) result[i] = (float)((Math.Max(db[i], top - 80) - mean) / std);
        return result;
    }

    /// <summary>Slaney's mel scale (librosa, htk=False): linear below 1 kHz, logarithmic above.</summary>
    public static double HzToMel(double hz)
    {
        const double fSp = 200.0 / 3, minLogHz = 1000, minLogMel = minLogHz / fSp;
        double logStep = Math.Log(6.4) / 27.0;
        return hz >= minLogHz ? minLogMel + Math.Log(hz / minLogHz) / logStep : hz / fSp;
    }

    public static double MelToHz(double mel)
    {
        const double fSp = 200.0 / 3, minLogHz = 1000, minLogMel = minLogHz / fSp;
        double logStep = Math.Log(6.4) / 27.0;
        return mel >= minLogMel ? minLogHz * Math.Exp(logStep * (mel - minLogMel)) : fSp * mel;
    }

    /// <summary>librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm='slaney').</summary>
    public static double[][] SlaneyFilterbank(int sampleRate, int fftSize, int mels, double fMin, double fMax)
    {
        int bins = fftSize / 2 + 1;
        var fftFreqs = Enumerable.Range(0, bins).Select(k => k * (double)sampleRate / fftSize).ToArray();
        double melMin = HzToMel(fMin), melMax = HzToMel(fMax);
        var melF = Enumerable.Range(0, mels + 2).Select(i => MelToHz(melMin + (melMax - melMin) * i / (mels + 1))).ToArray();
        var weights = new double[mels][];
        for (int m = 0; m < mels; m++)
        {
            weights[m] = new double[bins];
            double lowerW = melF[m + 1] - melF[m], upperW = melF[m + 2] - melF[m + 1];
            double enorm = 2.0 / (melF[m + 2] - melF[m]);
            for (int k = 0; k < bins; k++)
            {
                double lower = (fftFreqs[k] - melF[m]) / lowerW;
                double upper = (melF[m + 2] - fftFreqs[k]) / upperW;
                weights[m][k] = Math.Max(0, Math.Min(lower, upper)) * enorm;
            }
        }
        return weights;
    }
}
