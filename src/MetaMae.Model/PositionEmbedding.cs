using static TorchSharp.torch;

namespace MetaMae.Model;

/// <summary>
/// Fixed sin-cos position embeddings with a leading zero row for the CLS token (the MAE recipe). Computed in
/// double precision and rounded once to float32, as the reference does with NumPy.
/// </summary>
public static class PositionEmbedding
{
    /// <summary>(1 + length, dim): row 0 zeros; row 1 + m = [sin(m w_i), cos(m w_i)], w_i = 1 / 10000^(2i / dim).</summary>
    public static float[,] Sincos1d(int dim, int length)
    {
        var table = new float[length + 1, dim];
        for (int m = 0; m < length; m++) Fill(table, m + 1, 0, dim, m);
        return table;
    }

    /// <summary>
    /// (1 + g*g, dim) for a g x g grid, tokens row-major. As in MAE's meshgrid(w, h) call, the first half of the
    /// channels encodes the column index and the second half the row index.
    /// </summary>
    public static float[,] Sincos2d(int dim, int gridSize)
    {
        var table = new float[gridSize * gridSize + 1, dim];
        for (int r = 0; r < gridSize; r++)
            for (int c = 0; c < gridSize; c++)
            {
                int row = 1 + r * gridSize + c;
                Fill(table, row, 0, dim / 2, c);
                Fill(table, row, dim / 2, dim / 2, r);
            }
        return table;
    }

    /// <summary>
    /// The table for an input spec as a (1, 1 + L, dim) tensor. Image+text: each modality keeps its own positions,
    /// the image's 2-D table (with the CLS row) followed by the text's 1-D rows.
    /// </summary>
    public static Tensor For(InputSpec input, int dim)
    {
        if (input.Kind == TokenizerKind.ImageText)
        {
            using var scope = NewDisposeScope();
            return cat([For(input.ImagePart, dim), For(input.TextPart!, dim)[.., 1..]], 1).MoveToOuterDisposeScope();
        }
        var table = input.Kind == TokenizerKind.Patches2d ? Sincos2d(dim, input.Grid.Rows) : Sincos1d(dim, input.NumTokens);
        return tensor(table).unsqueeze(0);
    }

    private static void Fill(float[,] table, int row, int offset, int width, double pos)
    {
        int half = width / 2;
        for (int i = 0; i < half; i++)
        {
            double omega = 1.0 / Math.Pow(10000.0, i / (double)half);
            table[row, offset + i] = (float)Math.Sin(pos * omega);
            table[row, offset + half + i] = (float)Math.Cos(pos * omega);
        }
    }
}
