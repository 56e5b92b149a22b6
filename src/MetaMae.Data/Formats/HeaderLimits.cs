namespace MetaMae.Data.Formats;

/// <summary>
/// What a file's header may claim before anything is allocated for it: no more than the bytes that hold it, and no
/// more than <see cref="MaxDecodedBytes"/> decoded, computed so that no product of dimensions can overflow. A claim
/// beyond either is a <see cref="FormatException"/> naming the file, the claim and the limit (the record is counted
/// bad and skipped), never an allocation of what a 100-byte file says. README, "Reliability".
/// </summary>
public static class HeaderLimits
{
    /// <summary>The most one array, table file or audio clip may decode to (1 GiB); images have their own pixel limit.</summary>
    public const long MaxDecodedBytes = 1L << 30;

    /// <summary>The product of <paramref name="dims"/>; an overflow or a negative dimension is a format error.</summary>
    public static long Product(IReadOnlyList<long> dims, string what)
    {
        long product = 1;
        foreach (var d in dims)
        {
            if (d < 0) throw new FormatException($"{what} has a negative dimension ({string.Join("x", dims)})");
            try
            {
                product = checked(product * d);
            }
            catch (OverflowException)
            {
                throw new FormatException($"{what} claims {string.Join("x", dims)} elements, more than 2^63");
            }
        }
        return product;
    }

    /// <summary>
    /// A claim of <paramref name="claimed"/> bytes, checked against the <paramref name="available"/> bytes that must hold
    /// them (null: not known, as inside a compressed stream) and against <see cref="MaxDecodedBytes"/>.
    /// </summary>
    public static void Check(string what, long claimed, long? available)
    {
        if (claimed < 0) throw new FormatException($"{what} claims a negative size ({claimed} bytes)");
        if (available is { } have && claimed > have)
            throw new FormatException($"{what} claims {claimed:N0} bytes, but only {have:N0} follow in the file (truncated, or a corrupt header)");
        if (claimed > MaxDecodedBytes)
            throw new FormatException($"{what} claims {claimed:N0} bytes, more than the {MaxDecodedBytes:N0} one record or array may take");
    }

    /// <summary>Reads <paramref name="source"/> (a decompressing stream) to its end, refusing more than <see cref="MaxDecodedBytes"/>.</summary>
    public static byte[] ReadAtMost(Stream source, string what, long max = MaxDecodedBytes)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        for (int n; (n = source.Read(chunk, 0, chunk.Length)) > 0;)
        {
            if (buffer.Length + n > max) throw new FormatException($"{what} decompresses to more than {max:N0} bytes, the most one array may take");
            buffer.Write(chunk, 0, n);
        }
        return buffer.ToArray();
    }
}
