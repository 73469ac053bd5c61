using System.Buffers.Binary;

namespace OrasStaging.DiskImages;

/// <summary>The 512-byte footer of a fixed VHD, as qemu-img convert -o subformat=fixed,force_size writes it.</summary>
internal static class VhdFooter
{
    public const int Length = 512;
    public const long MaxQemuSize = 2040L << 30;

    public static byte[] Build(long size, Guid uniqueId, DateTimeOffset now)
    {
        var f = new byte[Length];
        "conectix"u8.CopyTo(f);
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(8), 0x00000002);
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(12), 0x00010000);
        BinaryPrimitives.WriteUInt64BigEndian(f.AsSpan(16), ulong.MaxValue);
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(24), (uint)Math.Max(0, now.ToUnixTimeSeconds() - 946684800));
        "qem2"u8.CopyTo(f.AsSpan(28));
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(32), 0x00050003);
        "Wi2k"u8.CopyTo(f.AsSpan(36));
        BinaryPrimitives.WriteUInt64BigEndian(f.AsSpan(40), (ulong)size);
        BinaryPrimitives.WriteUInt64BigEndian(f.AsSpan(48), (ulong)size);
        // force_size: the maximum geometry tells readers (qemu, Hyper-V, Azure) to take current_size as is.
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(56), 65535);
        f[58] = 16;
        f[59] = 255;
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(60), 2);
        uniqueId.TryWriteBytes(f.AsSpan(68, 16), bigEndian: true, out _);
        BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(64), Checksum(f));
        return f;
    }

    /// <summary>A valid fixed-disk footer: cookie, type 2 and a matching checksum.</summary>
    public static bool IsFixedFooter(ReadOnlySpan<byte> f)
    {
        if (f.Length != Length || !f[..8].SequenceEqual("conectix"u8))
        {
            return false;
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(f[60..]) != 2)
        {
            return false;
        }

        return BinaryPrimitives.ReadUInt32BigEndian(f[64..]) == Checksum(f);
    }

    /// <summary>One's complement of the byte sum, with the checksum field itself taken as zero.</summary>
    public static uint Checksum(ReadOnlySpan<byte> f)
    {
        uint sum = 0;
        for (int i = 0; i < f.Length; i++)
        {
            if (i < 64 || i >= 68)
            {
                sum += f[i];
            }
        }

        return ~sum;
    }

    /// <summary>Azure wants whole MiB of data.</summary>
    public static long RoundToMiB(long size) => (size + (1 << 20) - 1) & ~((1L << 20) - 1);

    /// <summary>
    /// When the input's last 512 bytes, which may straddle the last two chunks, are a fixed VHD footer, shortens
    /// the chunks so the footer is not written as data; true when it did. The caller has at least 512 bytes.
    /// </summary>
    public static bool TrimFixedFooter(ref (byte[] Buffer, int Count)? prev, ref (byte[] Buffer, int Count)? last)
    {
        if (prev is not { } pv)
        {
            return false;
        }

        Span<byte> tail = stackalloc byte[Length];
        int fromLast = last?.Count ?? 0;
        int fromPrev = Length - fromLast;
        pv.Buffer.AsSpan(pv.Count - fromPrev, fromPrev).CopyTo(tail);
        if (last is { } l)
        {
            l.Buffer.AsSpan(0, l.Count).CopyTo(tail[fromPrev..]);
        }

        if (!IsFixedFooter(tail))
        {
            return false;
        }

        prev = (pv.Buffer, pv.Count - fromPrev);
        last = null;
        return true;
    }
}
