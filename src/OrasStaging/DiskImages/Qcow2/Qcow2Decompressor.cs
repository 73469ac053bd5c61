using System.IO.Compression;
using OrasStaging.Compression;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>
/// Inflates one compressed qcow2 cluster. The descriptor only bounds the compressed bytes to whole 512-byte
/// sectors, so the input may carry the head of the next cluster after the stream's end: like qemu, decoding
/// stops when a full cluster has been produced, and anything short of a full cluster is a corrupt image.
/// zlib clusters are raw deflate; zstd clusters are one or more zstd frames (qcow2.txt "Compressed Cluster Layout").
/// Native where it loads (ISA-L's inflate, libzstd; <see cref="Decoders.ClusterInflater"/> has the rule and the
/// ORASSTAGING_DECODER switch), each with one state reused for every cluster; else the managed decoders. Both give
/// the same bytes, and corrupt data is <see cref="ErrorCode.CorruptInput"/> on either, never a fallback.
/// Not thread-safe: one per reading thread.
/// </summary>
internal sealed class Qcow2Decompressor : IDisposable
{
    private readonly Qcow2Compression _type;
    private readonly IsalRawInflater? _isal;
    private readonly LibZstdFrameDecoder? _libzstd;
    private ZstdSharp.Decompressor? _zstd;
    private byte[]? _bounce;

    public Qcow2Decompressor(Qcow2Compression type, DecoderChoice choice = DecoderChoice.Default)
    {
        _type = type;
        if (type == Qcow2Compression.Zlib && Decoders.ClusterInflater(choice) is { } isal)
        {
            _isal = new IsalRawInflater(isal);
        }
        else if (type == Qcow2Compression.Zstd && Decoders.ClusterZstd(choice) is { } zstd)
        {
            _libzstd = new LibZstdFrameDecoder(zstd);
        }
    }

    /// <summary>True when a native library decodes (for Verbose and tests).</summary>
    public bool IsNative => _isal is not null || _libzstd is not null;

    public void Decompress(byte[] source, int length, Memory<byte> cluster)
    {
        try
        {
            int produced;
            if (!IsNative)
            {
                produced = _type == Qcow2Compression.Zlib ? Inflate(source, length, cluster.Span) : UnwrapZstd(source.AsSpan(0, length), cluster.Span);
            }
            else if (System.Runtime.InteropServices.MemoryMarshal.TryGetArray<byte>(cluster, out var segment))
            {
                produced = DecodeNative(source, length, segment.Array!, segment.Offset, segment.Count);
            }
            else
            {
                // Not array-backed (no caller today): decode beside and copy.
                if (_bounce is null || _bounce.Length < cluster.Length)
                {
                    _bounce = new byte[cluster.Length];
                }

                produced = DecodeNative(source, length, _bounce, 0, cluster.Length);
                _bounce.AsSpan(0, cluster.Length).CopyTo(cluster.Span);
            }

            if (produced != cluster.Length)
            {
                throw Qcow2Header.Corrupt($"a compressed cluster inflates to {produced} bytes, not {cluster.Length}");
            }
        }
        catch (OrasStagingException)
        {
            throw;
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or ZstdSharp.ZstdException or ArgumentException or InvalidOperationException)
        {
            throw new OrasStagingException(ErrorCode.CorruptInput, "The qcow2 image is malformed: a compressed cluster does not decode (" + ex.Message + ").",
                "Check the image with 'qemu-img check'; download or rebuild it.", ex);
        }
    }

    private int DecodeNative(byte[] source, int length, byte[] output, int offset, int count)
    {
        if (_isal is not null)
        {
            return _isal.Inflate(source, length, output, offset, count);
        }

        int total = 0, at = 0;
        while (total < count && at < length)
        {
            int frame = ZstdFrameLength(source.AsSpan(at, length - at));
            total += _libzstd!.DecodeFrame(source, at, frame, output, offset + total, count - total);
            at += frame;
        }

        return total;
    }

    private static int Inflate(byte[] source, int length, Span<byte> cluster)
    {
        using var deflate = new DeflateStream(new MemoryStream(source, 0, length, writable: false), CompressionMode.Decompress);
        int total = 0;
        while (total < cluster.Length)
        {
            int n = deflate.Read(cluster[total..]);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }

    private int UnwrapZstd(ReadOnlySpan<byte> source, Span<byte> cluster)
    {
        _zstd ??= new ZstdSharp.Decompressor();
        int total = 0;
        while (total < cluster.Length && source.Length > 0)
        {
            int frame = ZstdFrameLength(source);
            total += _zstd.Unwrap(source[..frame], cluster[total..]);
            source = source[frame..];
        }

        return total;
    }

    /// <summary>
    /// The exact length of the zstd frame at the start of <paramref name="s"/> (RFC 8878 §3.1.1), found by walking
    /// the block headers, so that trailing sector padding is never handed to the decoder as a second frame.
    /// </summary>
    internal static int ZstdFrameLength(ReadOnlySpan<byte> s)
    {
        if (s.Length < 6 || s[0] != 0x28 || s[1] != 0xB5 || s[2] != 0x2F || s[3] != 0xFD)
        {
            throw Qcow2Header.Corrupt("a zstd-compressed cluster does not start with a zstd frame");
        }

        byte fhd = s[4];
        int fcsFlag = fhd >> 6;
        bool singleSegment = (fhd & 0x20) != 0;
        bool checksum = (fhd & 0x04) != 0;
        int dictIdBytes = (fhd & 3) switch { 0 => 0, 1 => 1, 2 => 2, _ => 4 };
        int fcsBytes = fcsFlag switch { 0 => singleSegment ? 1 : 0, 1 => 2, 2 => 4, _ => 8 };
        long at = 5 + (singleSegment ? 0 : 1) + dictIdBytes + fcsBytes;
        while (true)
        {
            if (at + 3 > s.Length)
            {
                throw Qcow2Header.Corrupt("a zstd-compressed cluster is cut short");
            }

            int header = s[(int)at] | (s[(int)at + 1] << 8) | (s[(int)at + 2] << 16);
            bool last = (header & 1) != 0;
            int type = (header >> 1) & 3;
            int size = header >> 3;
            at += 3 + (type == 1 ? 1 : size);
            if (type == 3)
            {
                throw Qcow2Header.Corrupt("a zstd-compressed cluster has a reserved block type");
            }

            if (last)
            {
                break;
            }
        }

        at += checksum ? 4 : 0;
        if (at > s.Length)
        {
            throw Qcow2Header.Corrupt("a zstd-compressed cluster is cut short");
        }

        return (int)at;
    }

    public void Dispose()
    {
        _zstd?.Dispose();
        _libzstd?.Dispose();
    }
}
