"use strict";(self.rspackChunkportside=self.rspackChunkportside||[]).push([[700],{646(o,r,e){var t=e(601),n=e.n(t),a=e(314),p=(e.n(a))()(n());p.push([o.id,`/* The portside panel. Every colour is a JupyterLab theme variable, so light and dark follow. */
.ps-root {
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
  overflow: auto;
  min-width: 280px;
}

.ps-panel {
  display: flex;
  flex-direction: column;
  gap: 4px;
  padding: 4px;
}

.ps-toolbar {
  display: flex;
  align-items: center;
  gap: 4px;
}

.ps-filter {
  flex: 1;
  min-width: 0;
  background: var(--jp-input-background, var(--jp-layout-color1));
  color: var(--jp-ui-font-color1);
  border: var(--jp-border-width) solid var(--jp-border-color1);
  padding: 2px 6px;
}

.ps-context-label {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.ps-context {
  flex: 1;
  min-width: 0;
  background: var(--jp-input-background, var(--jp-layout-color1));
  color: var(--jp-ui-font-color1);
  border: var(--jp-border-width) solid var(--jp-border-color1);
  padding: 1px 4px;
}

.ps-live {
  color: var(--jp-ui-font-color3);
  font-size: 10px;
}

.ps-live-on {
  color: var(--jp-success-color1);
}

.ps-message {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  padding: 0 4px;
}

.ps-section {
  border-top: var(--jp-border-width) solid var(--jp-border-color2);
}

.ps-section-header {
  display: flex;
  align-items: center;
  gap: 4px;
  padding: 4px 0;
  font-weight: 600;
  text-transform: uppercase;
  font-size: var(--jp-ui-font-size0);
  color: var(--jp-ui-font-color1);
}

.ps-section-title {
  flex: 1;
}

.ps-count {
  color: var(--jp-ui-font-color2);
  font-weight: normal;
}

.ps-toggle {
  background: none;
  border: none;
  color: var(--jp-ui-font-color2);
  cursor: pointer;
  padding: 0 2px;
}

.ps-item {
  padding: 4px 2px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color3);
}

.ps-item:hover {
  background: var(--jp-layout-color2);
}

.ps-item-main {
  display: flex;
  align-items: center;
  gap: 4px;
}

.ps-item-main .ps-name {
  flex: 1;
  min-width: 0;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.ps-status {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  white-space: nowrap;
}

.ps-item-meta {
  display: flex;
  flex-wrap: wrap;
  gap: 2px 8px;
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  padding: 1px 0 2px 12px;
  overflow-wrap: anywhere;
}

.ps-item-actions {
  display: flex;
  flex-wrap: nowrap;
  gap: 2px;
  padding-left: 4px;
}

.ps-item-actions .ps-button {
  flex: 0 1 auto;
  min-width: 0;
  margin: 1px 0;
  padding: 1px 3px;
  white-space: nowrap;
}

.ps-button:disabled {
  opacity: 0.5;
  cursor: default;
}

.ps-image {
  max-width: 100%;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.ps-hint {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  font-weight: normal;
}

.ps-run-form {
  display: flex;
  flex-direction: column;
  gap: 6px;
  min-width: 320px;
}

.ps-run-form label {
  display: flex;
  flex-direction: column;
  gap: 2px;
}

.ps-run-form label.ps-check,
.ps-prune-form label.ps-check {
  flex-direction: row;
  align-items: center;
  gap: 4px;
}

.ps-run-form textarea {
  resize: vertical;
}

.ps-name {
  font-weight: 600;
}

.ps-mono,
.ps-logs pre,
.ps-inspect {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
}

.ps-state {
  flex: none;
  display: inline-block;
  width: 8px;
  height: 8px;
  border-radius: 50%;
  margin-right: 4px;
  background: var(--jp-ui-font-color3);
}

.ps-state-running {
  background: var(--jp-success-color1);
}

.ps-state-paused,
.ps-state-restarting {
  background: var(--jp-warn-color1);
}

.ps-state-dead {
  background: var(--jp-error-color1);
}

.ps-button {
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: 2px;
  cursor: pointer;
  font-size: var(--jp-ui-font-size0);
  margin: 1px 2px 1px 0;
  padding: 1px 6px;
}

.ps-button:hover {
  background: var(--jp-layout-color3);
}

.ps-danger {
  color: var(--jp-error-color1);
}

.ps-logs {
  border: var(--jp-border-width) solid var(--jp-border-color2);
  margin-top: 4px;
}

.ps-logs header {
  display: flex;
  justify-content: space-between;
  align-items: center;
  padding: 2px 4px;
  background: var(--jp-layout-color2);
}

.ps-logs pre {
  margin: 0;
  padding: 4px;
  max-height: 240px;
  overflow: auto;
  background: var(--jp-layout-color0);
  color: var(--jp-content-font-color1);
  white-space: pre-wrap;
}

.ps-inspect {
  max-height: 60vh;
  overflow: auto;
}
`,""]),e.d(r,{},{A:p})},314(o){o.exports=function(o){var r=[];return r.toString=function(){return this.map(function(r){var e="",t=void 0!==r[5];return r[4]&&(e+="@supports (".concat(r[4],") {")),r[2]&&(e+="@media ".concat(r[2]," {")),t&&(e+="@layer".concat(r[5].length>0?" ".concat(r[5]):""," {")),e+=o(r),t&&(e+="}"),r[2]&&(e+="}"),r[4]&&(e+="}"),e}).join("")},r.i=function(o,e,t,n,a){"string"==typeof o&&(o=[[null,o,void 0]]);var p={};if(t)for(var i=0;i<this.length;i++){var s=this[i][0];null!=s&&(p[s]=!0)}for(var l=0;l<o.length;l++){var c=[].concat(o[l]);t&&p[c[0]]||(void 0!==a&&(void 0===c[5]||(c[1]="@layer".concat(c[5].length>0?" ".concat(c[5]):""," {").concat(c[1],"}")),c[5]=a),e&&(c[2]&&(c[1]="@media ".concat(c[2]," {").concat(c[1],"}")),c[2]=e),n&&(c[4]?(c[1]="@supports (".concat(c[4],") {").concat(c[1],"}"),c[4]=n):c[4]="".concat(n)),r.push(c))}},r}},601(o){o.exports=function(o){return o[1]}},72(o){var r=[];function e(o){for(var e=-1,t=0;t<r.length;t++)if(r[t].identifier===o){e=t;break}return e}function t(o,t){for(var n={},a=[],p=0;p<o.length;p++){var i=o[p],s=t.base?i[0]+t.base:i[0],l=n[s]||0,c="".concat(s," ").concat(l);n[s]=l+1;var d=e(c),u={css:i[1],media:i[2],sourceMap:i[3],supports:i[4],layer:i[5]};if(-1!==d)r[d].references++,r[d].updater(u);else{var f=function(o,r){var e=r.domAPI(r);return e.update(o),function(r){r?(r.css!==o.css||r.media!==o.media||r.sourceMap!==o.sourceMap||r.supports!==o.supports||r.layer!==o.layer)&&e.update(o=r):e.remove()}}(u,t);t.byIndex=p,r.splice(p,0,{identifier:c,updater:f,references:1})}a.push(c)}return a}o.exports=function(o,n){var a=t(o=o||[],n=n||{});return function(o){o=o||[];for(var p=0;p<a.length;p++){var i=e(a[p]);r[i].references--}for(var s=t(o,n),l=0;l<a.length;l++){var c=e(a[l]);0===r[c].references&&(r[c].updater(),r.splice(c,1))}a=s}}},659(o){var r={};o.exports=function(o,e){var t=function(o){if(void 0===r[o]){var e=document.querySelector(o);if(window.HTMLIFrameElement&&e instanceof window.HTMLIFrameElement)try{e=e.contentDocument.head}catch(o){e=null}r[o]=e}return r[o]}(o);if(!t)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");t.appendChild(e)}},540(o){o.exports=function(o){var r=document.createElement("style");return o.setAttributes(r,o.attributes),o.insert(r,o.options),r}},56(o,r,e){o.exports=function(o){var r=e.nc;r&&o.setAttribute("nonce",r)}},825(o){o.exports=function(o){if("u"<typeof document)return{update:function(){},remove:function(){}};var r=o.insertStyleElement(o);return{update:function(e){var t,n,a;t="",e.supports&&(t+="@supports (".concat(e.supports,") {")),e.media&&(t+="@media ".concat(e.media," {")),(n=void 0!==e.layer)&&(t+="@layer".concat(e.layer.length>0?" ".concat(e.layer):""," {")),t+=e.css,n&&(t+="}"),e.media&&(t+="}"),e.supports&&(t+="}"),(a=e.sourceMap)&&"u">typeof btoa&&(t+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(a))))," */")),o.styleTagTransform(t,r,o.options)},remove:function(){var o;null===(o=r).parentNode||o.parentNode.removeChild(o)}}}},113(o){o.exports=function(o,r){if(r.styleSheet)r.styleSheet.cssText=o;else{for(;r.firstChild;)r.removeChild(r.firstChild);r.appendChild(document.createTextNode(o))}}},959(o,r,e){var t=e(72),n=e.n(t),a=e(825),p=e.n(a),i=e(659),s=e.n(i),l=e(56),c=e.n(l),d=e(540),u=e.n(d),f=e(113),v=e.n(f),m=e(646),x={};x.styleTagTransform=v(),x.setAttributes=c(),x.insert=s().bind(null,"head"),x.domAPI=p(),x.insertStyleElement=u(),n()(m.A,x),m.A&&m.A.locals&&m.A.locals}}]);