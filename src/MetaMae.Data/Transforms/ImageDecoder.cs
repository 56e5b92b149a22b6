using SkiaSharp;

namespace MetaMae.Data.Transforms;

/// <summary>
/// Image bytes to a (3, H, W) float array in [0, 1], as torchvision's Resize((H, W)) + ToTensor do: decode (SkiaSharp;
/// PPM/PGM through ImageSharp, which Skia cannot read), optional crop, bilinear resize to exactly (H, W), RGB.
/// </summary>
public static class ImageDecoder
{
    public static float[] DecodeRgb(byte[] bytes, int height, int width, (int X0, int Y0, int X1, int Y1)? crop = null)
    {
        using var bitmap = Decode(bytes);
        using var cropped = crop is { } c ? Crop(bitmap, c) : null;
        var source = cropped ?? bitmap;
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var resized = source.Width == width && source.Height == height && source.ColorType == SKColorType.Rgba8888
            ? source.Copy()
            : source.Resize(info, new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear))
              ?? throw new FormatException("image could not be resized");
        using var rgba = resized.ColorType == SKColorType.Rgba8888 ? null : resized.Copy(SKColorType.Rgba8888);
        var pixels = (rgba ?? resized).GetPixelSpan();
        var result = new float[3 * height * width];
        int plane = height * width;
        for (int i = 0; i < plane; i++)
        {
            result[i] = pixels[4 * i] / 255f;
            result[plane + i] = pixels[4 * i + 1] / 255f;
            result[2 * plane + i] = pixels[4 * i + 2] / 255f;
        }
        return result;
    }

    /// <summary>
    /// Decoder limit: an image whose header claims more pixels than this is refused before any pixel memory is taken
    /// (64 Mpx, 256 MB as RGBA; the largest DABS images are a few Mpx).
    /// </summary>
    public const long MaxPixels = 64L * 1024 * 1024;

    public static SKBitmap Decode(byte[] bytes)
    {
        if (bytes.Length == 0) throw new FormatException("the file is empty");
        if (bytes.Length >= 2 && bytes[0] == (byte)'P' && bytes[1] is >= (byte)'1' and <= (byte)'6') return DecodePnm(bytes);
        using var stream = new SKMemoryStream(bytes);
        using var codec = SKCodec.Create(stream, out var result)
                          ?? throw new FormatException($"not a decodable image ({result}); JPEG, PNG, BMP, GIF, WebP or PPM expected");
        var info = codec.Info;
        CheckSize(info.Width, info.Height);
        var bitmap = new SKBitmap(new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var decoded = codec.GetPixels(bitmap.Info, bitmap.GetPixels());
        if (decoded != SKCodecResult.Success)
        {
            bitmap.Dispose();
            throw new FormatException(decoded == SKCodecResult.IncompleteInput
                ? $"the {info.Width}x{info.Height} image is truncated (its data ends before the last row)"
                : $"the {info.Width}x{info.Height} image could not be decoded ({decoded})");
        }
        return bitmap;
    }

    private static void CheckSize(long width, long height)
    {
        if (width <= 0 || height <= 0) throw new FormatException($"the header claims a {width}x{height} image");
        if (width * height > MaxPixels)
            throw new FormatException($"the header claims {width}x{height} pixels, over the decoder limit of {MaxPixels / (1024 * 1024)} Mpx");
    }

    private static SKBitmap DecodePnm(byte[] bytes)
    {
        var header = SixLabors.ImageSharp.Image.Identify(bytes) ?? throw new FormatException("not a decodable PPM/PGM image");
        CheckSize(header.Width, header.Height);
        using var image = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgba32>(bytes);
        var bitmap = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var span = bitmap.GetPixelSpan();
        var buffer = new byte[image.Width * image.Height * 4];
        image.CopyPixelDataTo(buffer);
        buffer.CopyTo(span);
        return bitmap;
    }

    private static SKBitmap Crop(SKBitmap bitmap, (int X0, int Y0, int X1, int Y1) c)
    {
        var rect = SKRectI.Intersect(new SKRectI(c.X0, c.Y0, c.X1, c.Y1), new SKRectI(0, 0, bitmap.Width, bitmap.Height));
        if (rect.Width <= 0 || rect.Height <= 0) throw new FormatException($"crop box ({c.X0},{c.Y0},{c.X1},{c.Y1}) lies outside the {bitmap.Width}x{bitmap.Height} image");
        var result = new SKBitmap(rect.Width, rect.Height, bitmap.ColorType, bitmap.AlphaType);
        if (!bitmap.ExtractSubset(result, rect)) throw new FormatException("crop failed");
        return result;
    }

    /// <summary>A (C, H, W) float array from grey levels (0..255) repeated over 3 channels, resized bilinearly.</summary>
    public static float[] GreyToRgb(byte[] grey, int srcH, int srcW, int height, int width)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(srcW, srcH, SKColorType.Gray8, SKAlphaType.Opaque));
        grey.AsSpan(0, srcH * srcW).CopyTo(bitmap.GetPixelSpan());
        using var resized = srcH == height && srcW == width ? bitmap.Copy()
            : bitmap.Resize(new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque), new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.None))
              ?? throw new FormatException("image could not be resized");
        var px = resized.GetPixelSpan();
        var result = new float[3 * height * width];
        int plane = height * width;
        for (int i = 0; i < plane; i++) result[i] = result[plane + i] = result[2 * plane + i] = px[i] / 255f;
        return result;
    }

    /// <summary>Encodes (3, H, W) floats in [0, 1] as PNG: test fixtures and previews.</summary>
    public static byte[] EncodePng(float[] chw, int height, int width)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        var px = bitmap.GetPixelSpan();
        int plane = height * width;
        for (int i = 0; i < plane; i++)
        {
            px[4 * i] = (byte)Math.Round(chw[i] * 255);
            px[4 * i + 1] = (byte)Math.Round(chw[plane + i] * 255);
            px[4 * i + 2] = (byte)Math.Round(chw[2 * plane + i] * 255);
            px[4 * i + 3] = 255;
        }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
