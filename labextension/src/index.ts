/**
 * The portside JupyterLab extension: one plugin that docks the portside panel in the left
 * sidebar. The panel talks to the `portside.kernel.server` server extension over REST.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { LabIcon } from '@jupyterlab/ui-components';

import { PortsidePanel } from './panel';

/** A container ship's stack of boxes, drawn in the theme's icon colour. */
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <rect x="3" y="9" width="5" height="5" rx="0.5"/>
    <rect x="9.5" y="9" width="5" height="5" rx="0.5"/>
    <rect x="16" y="9" width="5" height="5" rx="0.5"/>
    <rect x="6.25" y="3" width="5" height="5" rx="0.5"/>
    <path d="M1 15.5h22l-3 5.5H4z"/>
  </g>
</svg>`;

export const portsideIcon = new LabIcon({ name: 'portside:icon', svgstr: ICON_SVG });

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'portside:panel',
  description: 'Images, containers and volumes of the portside engine, in the left sidebar.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    const panel = new PortsidePanel(app);
    panel.title.icon = portsideIcon;
    panel.title.caption = 'Portside containers';
    app.shell.add(panel, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(panel, 'portside-panel');
    }
  }
};

export default plugin;
