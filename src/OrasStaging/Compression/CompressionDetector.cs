using System.Buffers.Binary;

namespace OrasStaging.Compression;

/// <summary>Magic-byte sniffing of the compressed stream.</summary>
internal static class CompressionDetector
{
    /// <summary>Bytes to peek so every signature below is decidable.</summary>
    public const int PeekLength = 8;

    public static CompressionKind Detect(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 3 && head[0] == 0x1F && head[1] == 0x8B && head[2] == 0x08)
        {
            return CompressionKind.Gzip;
        }

        if (head.Length >= 4)
        {
            uint magic = BinaryPrimitives.ReadUInt32LittleEndian(head);
            // A zstd stream may open with a skippable frame (0x184D2A50..5F), e.g. seekable-zstd's index.
            if (magic == 0xFD2FB528 || (magic & 0xFFFFFFF0) == 0x184D2A50)
            {
                return CompressionKind.Zstd;
            }
        }

        if (head.Length >= 6 && head[..6].SequenceEqual(stackalloc byte[] { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00 }))
        {
            return CompressionKind.Xz;
        }

        if (head.Length >= 4 && head[0] == 0x42 && head[1] == 0x5A && head[2] == 0x68 && head[3] >= (byte)'1' && head[3] <= (byte)'9')
        {
            return CompressionKind.Bzip2;
        }

        return CompressionKind.None;
    }

    /// <summary>Formats we recognise but cannot decode; worth a clear error rather than a raw copy.</summary>
    public static string? UnsupportedCompression(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(head) == 0x184D2204)
        {
            return "lz4";
        }

        return null;
    }
}
