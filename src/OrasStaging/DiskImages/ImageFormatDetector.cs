using System.Buffers.Binary;

namespace OrasStaging.DiskImages;

/// <summary>Signatures of the decoded bytes (disk-formats.md §6).</summary>
internal static class ImageFormatDetector
{
    /// <summary>Enough to see the ISO 9660 marker at 0x8001.</summary>
    public const int PeekLength = 0x8001 + 5;

    public static SourceFormat Detect(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == 0x514649FB)
        {
            return SourceFormat.Qcow2;
        }

        if (head.Length >= 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == 0x4B444D56)
        {
            return SourceFormat.Vmdk;
        }

        if (StartsWith(head, "# Disk DescriptorFile"u8))
        {
            return SourceFormat.Vmdk;
        }

        if (StartsWith(head, "vhdxfile"u8))
        {
            return SourceFormat.Vhdx;
        }

        // A dynamic VHD carries a copy of its footer at offset 0; a fixed one only at the end.
        if (StartsWith(head, "conectix"u8))
        {
            return SourceFormat.VhdDynamic;
        }

        if (head.Length >= 0x44 && BinaryPrimitives.ReadUInt32LittleEndian(head[0x40..]) == 0xBEDA107F)
        {
            return SourceFormat.Vdi;
        }

        return SourceFormat.Raw;
    }

    /// <summary>A word for messages and Verbose: which kind of raw it looks like.</summary>
    public static string DescribeRaw(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 520 && head.Slice(512, 8).SequenceEqual("EFI PART"u8))
        {
            return "raw (GPT)";
        }

        if (head.Length >= 0x8001 + 5 && head.Slice(0x8001, 5).SequenceEqual("CD001"u8))
        {
            return "raw (ISO 9660)";
        }

        if (head.Length >= 512 && head[510] == 0x55 && head[511] == 0xAA)
        {
            return "raw (MBR)";
        }

        return "raw";
    }

    private static bool StartsWith(ReadOnlySpan<byte> head, ReadOnlySpan<byte> magic) =>
        head.Length >= magic.Length && head[..magic.Length].SequenceEqual(magic);
}
