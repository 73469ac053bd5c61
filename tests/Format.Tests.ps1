#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# The console views of OrasStaging.Format.ps1xml: short digests, human sizes, staged or skipped, and nothing
# hidden from Format-List *.

BeforeDiscovery {
    # The output types are named in the tests below; they exist once the module is loaded.
    Import-Module $env:ORASSTAGING_MODULE -Force
}

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    $script:ModuleBase = Split-Path $ModulePath
    Import-Module $ModulePath -Force
    $script:LayerDigest = 'sha256:1a2b3c4d5e6f77889900aabbccddeeff00112233445566778899aabbccddeeff'
    $script:ManifestDigest = 'sha256:9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0'

    function Get-ViewProperties([string] $TypeName) {
        # Every property a view reads, by PropertyName or as $_.Name inside a script block.
        $xml = [xml](Get-Content (Join-Path $ModuleBase 'OrasStaging.Format.ps1xml') -Raw)
        $views = $xml.Configuration.ViewDefinitions.View | Where-Object { $_.ViewSelectedBy.TypeName -eq $TypeName }
        $names = foreach ($view in $views) {
            $view.SelectNodes('.//PropertyName') | ForEach-Object InnerText
            $view.SelectNodes('.//ScriptBlock') | ForEach-Object { [regex]::Matches($_.InnerText, '\$_\.(\w+)') | ForEach-Object { $_.Groups[1].Value } }
        }
        @($names | Sort-Object -Unique)
    }

    function New-RealObject([type] $Type, [hashtable] $Values) {
        # The real output type, filled without knowing its constructor: init-only and get-only properties are
        # set through their setter or backing field, as a deserializer would.
        $object = [System.Runtime.CompilerServices.RuntimeHelpers]::GetUninitializedObject($Type)
        foreach ($property in $Type.GetProperties()) {
            if (-not $Values.ContainsKey($property.Name)) { continue }
            $value = $Values[$property.Name]
            $target = [Nullable]::GetUnderlyingType($property.PropertyType) ?? $property.PropertyType
            if ($target.IsEnum) { $value = [Enum]::GetValues($target)[0] }
            elseif ($target -eq [System.IO.FileInfo]) { $value = [System.IO.FileInfo]::new([string]$value) }
            elseif ($target -eq [uri]) { $value = [uri]::new([string]$value) }
            else { $value = [System.Management.Automation.LanguagePrimitives]::ConvertTo($value, $target) }
            $setter = $property.GetSetMethod($true)
            if ($setter) { $property.SetValue($object, $value); continue }
            $field = $Type.GetField("<$($property.Name)>k__BackingField", [System.Reflection.BindingFlags]'NonPublic, Instance')
            if ($field) { $field.SetValue($object, $value) }
        }
        $object
    }

    $script:ImageValues = @{
        Reference = 'oras://ghcr.io/safl/nosi/debian-bookworm-amd64:latest'; Registry = 'ghcr.io'
        Repository = 'safl/nosi/debian-bookworm-amd64'; Tag = 'latest'; ManifestDigest = $ManifestDigest
        PinnedKind = 'None'; Digest = $LayerDigest; Size = 1610612736L; MediaType = 'application/vnd.nosi.disk-image.layer.v1+gzip'
        Title = 'debian-bookworm-amd64.img.gz'; BlobUri = "https://ghcr.io/v2/safl/nosi/debian-bookworm-amd64/blobs/$LayerDigest"
        ArtifactType = 'application/vnd.nosi.disk-image.v1+gzip'; Platform = 'linux/amd64'
    }
    $script:StagedValues = @{
        Name = 'debian'; Reference = 'oras://ghcr.io/safl/nosi/debian-bookworm-amd64:latest'
        Path = (Join-Path ([IO.Path]::GetTempPath()) 'debian.qcow2'); Format = 'qcow2'; Digest = $LayerDigest
        ManifestDigest = $ManifestDigest; Skipped = $true; VirtualSize = 10737418240L; FileSize = 1610612736L
        Duration = [timespan]::FromSeconds(12.34); SkipReason = 'The stamp matches the layer digest.'
    }
}

AfterAll {
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe 'Format views' {
    It 'loads table and list views for <_> through FormatsToProcess' -ForEach 'OrasStaging.OrasImage', 'OrasStaging.StagedImage' {
        $controls = @((Get-FormatData -TypeName $_ -PowerShellVersion $PSVersionTable.PSVersion).FormatViewDefinition.Control | ForEach-Object { $_.GetType().Name })
        $controls | Should -Contain 'TableControl'
        $controls | Should -Contain 'ListControl'
    }

    It 'renders an image by type name: short digest, human size, reference' {
        $image = [pscustomobject]($ImageValues + @{ PSTypeName = 'OrasStaging.OrasImage' })
        $table = $image | Format-Table | Out-String -Width 200
        $table | Should -Match ([regex]::Escape('sha256:1a2b3c4d…'))
        $table | Should -Match ([regex]::Escape('1.50 GiB'))
        $table | Should -Match ([regex]::Escape('ghcr.io/safl/nosi/debian-bookworm-amd64:latest'))
        $table | Should -Not -Match ([regex]::Escape($LayerDigest))
        $list = $image | Format-List | Out-String -Width 200
        $list | Should -Match 'ManifestDigest\s*:\s*sha256:9f8e7d6c…'
        $list | Should -Match 'Platform\s*:\s*linux/amd64'
    }

    It 'renders a staged image by type name: Skipped or Staged, human sizes, seconds' {
        $staged = [pscustomobject]($StagedValues + @{ PSTypeName = 'OrasStaging.StagedImage' })
        $table = $staged | Format-Table | Out-String -Width 250
        $table | Should -Match 'Skipped'
        $table | Should -Match ([regex]::Escape('10.0 GiB'))
        $table | Should -Match ([regex]::Escape('12.3 s'))
        $staged.Skipped = $false
        ($staged | Format-Table | Out-String -Width 250) | Should -Match 'Staged'
        ($staged | Format-List | Out-String -Width 250) | Should -Match 'SkipReason\s*:\s*The stamp matches'
    }

    It 'still shows every property, raw, with Format-List *' {
        $image = [pscustomobject]($ImageValues + @{ PSTypeName = 'OrasStaging.OrasImage' })
        $all = $image | Format-List * | Out-String -Width 250
        $all | Should -Match ([regex]::Escape($LayerDigest))
        $all | Should -Match 'Size\s*:\s*1610612736'
    }
}

Describe 'Format views on the real output types' {
    It 'OrasStaging.OrasImage has every property the views read, and renders' {
        $type = 'OrasStaging.OrasImage' -as [type]
        foreach ($name in Get-ViewProperties 'OrasStaging.OrasImage') { $type.GetProperty($name) | Should -Not -BeNullOrEmpty -Because "the views read $name" }
        $image = New-RealObject $type $ImageValues
        $table = $image | Format-Table | Out-String -Width 200
        $table | Should -Match ([regex]::Escape('sha256:1a2b3c4d…'))
        $table | Should -Match ([regex]::Escape('1.50 GiB'))
        ($image | Format-List | Out-String -Width 200) | Should -Match 'Reference\s*:\s*oras://ghcr.io'
        ($image | Format-List * | Out-String -Width 250) | Should -Match ([regex]::Escape($LayerDigest))
    }

    It 'OrasStaging.StagedImage has every property the views read, and renders' {
        $type = 'OrasStaging.StagedImage' -as [type]
        foreach ($name in Get-ViewProperties 'OrasStaging.StagedImage') { $type.GetProperty($name) | Should -Not -BeNullOrEmpty -Because "the views read $name" }
        $staged = New-RealObject $type $StagedValues
        $table = $staged | Format-Table | Out-String -Width 250
        $table | Should -Match 'Skipped'
        $table | Should -Match ([regex]::Escape('10.0 GiB'))
        ($staged | Format-List * | Out-String -Width 250) | Should -Match ([regex]::Escape($LayerDigest))
    }
}

Describe 'Format views on what the cmdlets output' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
        $script:Registry = Start-TestRegistry
        $image = New-TestDiskImage -Path (Join-Path $TestDrive 'format-source.raw') -Size 2MB -Seed 11
        $script:Published = Publish-TestImage -Registry $Registry -Repository 'lab/format' -Tag 'latest' -ImagePath $image.FullName -Title 'format.img.gz'
        $script:Reference = "oras://$($Registry.registry)/lab/format:latest"
    }

    AfterAll {
        Stop-TestRegistry $Registry
    }

    It 'shows Resolve-OrasImage output with the short digest, human size and title' {
        $resolved = Resolve-OrasImage $Reference
        $table = $resolved | Format-Table | Out-String -Width 250
        # Oracles computed here, not by the module's Units: "sha256:" and eight hex digits, and the size in KiB or
        # MiB with three significant digits (the blob of a 2 MiB image is between 1 KiB and 2 MiB).
        $table | Should -Match ([regex]::Escape($Published.digest.Substring(0, 'sha256:'.Length + 8) + [char]0x2026))
        $size = [long]$Published.size
        $size | Should -BeGreaterThan 1024
        $size | Should -BeLessOrEqual 2MB
        $unit, $value = if ($size -ge 1MB) { 'MiB', ($size / 1MB) } else { 'KiB', ($size / 1KB) }
        $digits = if ($value -ge 100) { 0 } elseif ($value -ge 10) { 1 } else { 2 }
        $human = [math]::Round($value, $digits, [MidpointRounding]::AwayFromZero).ToString("F$digits", [cultureinfo]::InvariantCulture) + " $unit"
        $table | Should -Match ([regex]::Escape($human))
        $table | Should -Match 'format\.img\.gz'
        $table | Should -Not -Match ([regex]::Escape($Published.digest))
        ($resolved | Format-List * | Out-String -Width 250) | Should -Match ([regex]::Escape($Published.digest))
    }

    It 'shows Install-DiskImageFromOras output as Staged, then Skipped, with human sizes' {
        $target = Join-Path $TestDrive 'format.qcow2'
        $first = Install-DiskImageFromOras $Reference -Path $target | Format-Table | Out-String -Width 250
        $first | Should -Match 'Staged'
        $first | Should -Match '\b2\.00 MiB\b'
        $second = Install-DiskImageFromOras $Reference -Path $target | Format-List | Out-String -Width 250
        $second | Should -Match 'Status\s*:\s*Skipped'
        $second | Should -Match 'SkipReason\s*:\s*\S'
    }
}
